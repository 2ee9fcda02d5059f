"""Tool (outside the package): export the GQA fixtures of tests/models/expand/.

F.scaled_dot_product_attention(enable_gqa=True) (4 query heads, 2 key/value heads, on Linear
q, k, v; the model class of tools/export_attention_fixtures.py), causal and unmasked, and
Llama's hand-written repeat_kv (k[:, :, None].expand(...).reshape(...)), exported by torch's
dynamo exporter at opset 18, which repeats the K/V heads with Unsqueeze -> Expand -> Reshape,
and by the TorchScript exporter at opset 17 when it can (not F.sdpa with enable_gqa). Each
file is checked with onnx.checker and onnxruntime against torch (< 1e-4); <name>.npz holds
"input" float32 [64, T, C] (the first 48 calibrate, the last 16 are measured). README.md
there is rewritten.
Needs torch (not a dependency of microq).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_attention_fixtures import (C, N_SAMPLES, SEED, T, SdpaMasked,  # noqa: E402
                                       export_checked, tokens)

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "expand"


class RepeatKV(nn.Module):
    """Llama's GQA by hand: k[:, :, None].expand(b, kv, rep, t, d).reshape(b, h, t, d), then
    softmax(q k^T / sqrt(d)) v; 4 q heads, 2 kv heads."""

    def __init__(self, heads: int = 4, kv_heads: int = 2) -> None:
        super().__init__()
        self.heads, self.kv_heads = heads, kv_heads
        d = C // heads
        self.q = nn.Linear(C, C)
        self.k = nn.Linear(C, kv_heads * d)
        self.v = nn.Linear(C, kv_heads * d)
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        d, rep = c // self.heads, self.heads // self.kv_heads
        q = self.q(x).reshape(b, t, self.heads, d).transpose(1, 2)
        k, v = (m(x).reshape(b, t, self.kv_heads, d).transpose(1, 2) for m in (self.k, self.v))
        k, v = (z[:, :, None].expand(b, self.kv_heads, rep, t, d).reshape(b, self.heads, t, d)
                for z in (k, v))
        a = (q @ k.transpose(-2, -1) * d ** -0.5).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, t, c))

MODELS = {
    "sdpa_gqa": (lambda: SdpaMasked(heads=4, kv_heads=2),
                 "F.sdpa(enable_gqa=True): 4 q heads, 2 kv heads"),
    "sdpa_gqa_causal": (lambda: SdpaMasked(causal=True, heads=4, kv_heads=2),
                        "F.sdpa(is_causal=True, enable_gqa=True): 4 q heads, 2 kv heads"),
    "repeat_kv": (RepeatKV, "Llama's repeat_kv: k[:, :, None].expand(...).reshape(...), "
                  "4 q heads, 2 kv heads"),
}
VARIANTS = [("dynamo", True, 18), ("torchscript", False, 17)]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows, layers, skipped = [], [], []
    for i, (name, (make, text)) in enumerate(MODELS.items()):
        seed = SEED + 120 + i
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        x = tokens(rng, N_SAMPLES)
        model = make().eval()
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.savez_compressed(OUT / f"{name}.npz", input=x)
        layers.append(f"| {name} | {list(x.shape)} | {text} |")
        for tag, dynamo, opset in VARIANTS:
            path = OUT / f"{name}.{tag}.onnx"
            try:
                rows.append(export_checked(model, x, expected, path, dynamo, opset))
            except Exception as exc:  # noqa: BLE001 - the TorchScript exporter may lack GQA
                if dynamo:
                    raise
                path.unlink(missing_ok=True)
                text = str(exc).strip()
                why = text.splitlines()[0][:120] if text else type(exc).__name__
                skipped.append(f"- {path.name}: not exported ({why})")
    head = f"""# GQA attention exported from torch (ONNX Expand)

Made by `tools/export_expand_fixtures.py` (torch {torch.__version__}, onnx {onnx.__version__},
onnxruntime {ort.__version__}); do not edit by hand, re-run the tool. T={T} tokens, C={C}
channels, torch's default init, eval mode, input "input" [N, {T}, {C}] (dynamic N), output
"output". `<name>.npz` holds "input" float32 [{N_SAMPLES}, {T}, {C}]: tests calibrate on the
first 48 and measure on the last 16. Torch-exported files matched torch in onnxruntime (< 1e-4).

| model | input (the .npz) | what |
|---|---|---|
{chr(10).join(layers)}

| file | exporter | opset | bytes | ops |
|---|---|---|---|---|
"""
    tail = ("\n\n" + "\n".join(skipped) + "\n") if skipped else "\n"
    (OUT / "README.md").write_text(head + "\n".join(rows) + tail)


if __name__ == "__main__":
    main()
