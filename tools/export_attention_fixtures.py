"""Tool (outside the package): export the attention idioms in tests/models/attention/.

Every idiom PyTorch users write for self-attention is one tiny model here, exported with the
TorchScript exporter (dynamo=False, opset 14, the first with scaled_dot_product_attention; 17 where
LayerNormalization exists) and the
dynamo exporter (dynamo=True, opset 18), both with a dynamic batch axis "N". Each model gets
tests/models/attention/<name>.npz with "input" float32 [16, T, C] (token-like smooth signals).
Every file is checked with onnx.checker and onnxruntime against torch; README.md there is
rewritten. Needs torch (not a dependency of microq).
"""

from __future__ import annotations

import argparse
import io
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "attention"
SEED = 100
N_SAMPLES = 64
T, C, H = 8, 16, 2
MAX_BYTES = 100_000


class TimmIndex(nn.Module):
    """timm's Attention: qkv(x).reshape(B,T,3,H,D).permute(2,0,3,1,4); q, k, v = qkv[0..2]."""

    def __init__(self, unbind: bool = False) -> None:
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.unbind = unbind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, H, c // H).permute(2, 0, 3, 1, 4)
        if self.unbind:
            q, k, v = qkv.unbind(0)
        else:
            q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (c // H) ** -0.5
        attn = attn.softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(y)


class TimmUnbind(TimmIndex):
    def __init__(self) -> None:
        super().__init__(unbind=True)


class ChunkHeads(nn.Module):
    """q, k, v by chunk(3, dim=-1) of one Linear; heads by view + transpose; SDPA."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (z.view(b, t, H, c // H).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class SliceHeads(nn.Module):
    """Heads split by slicing the channel axis (x[..., i*D:(i+1)*D]) and concatenated back."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(C, C)
        self.k = nn.Linear(C, C)
        self.v = nn.Linear(C, C)
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        d = C // H
        heads = []
        for i in range(H):
            s = slice(i * d, (i + 1) * d)
            a = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / d**0.5, dim=-1)
            heads.append(a @ v[..., s])
        return self.proj(torch.cat(heads, dim=-1))


class SplitHeadAxis(nn.Module):
    """[B,H,T,D] heads split along the head axis with torch.split, SDPA per head, cat."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).view(b, t, 3 * H, c // H).transpose(1, 2)  # [B, 3H, T, D]
        q, k, v = torch.split(qkv, H, dim=1)
        y = F.scaled_dot_product_attention(q, k, v)  # [B, H, T, D]
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Sdpa(nn.Module):
    """F.scaled_dot_product_attention on [B, H, T, D] built by reshape + permute."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(C, C)
        self.k = nn.Linear(C, C)
        self.v = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (m(x).reshape(b, t, H, c // H).permute(0, 2, 1, 3)
                   for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        return y.permute(0, 2, 1, 3).reshape(b, t, c)


class Mha(nn.Module):
    """nn.MultiheadAttention(batch_first=True), self-attention."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(C, H, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer(batch_first=True) (post-norm, ReLU FFN), then mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(C, H, dim_feedforward=32, dropout=0.0,
                                                batch_first=True)
        self.head = nn.Linear(C, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x).mean(dim=1))


MODELS = {
    "timm_index": (TimmIndex, "qkv.reshape(B,T,3,H,D).permute(2,0,3,1,4); qkv[0], qkv[1], qkv[2]"),
    "timm_unbind": (TimmUnbind, "same, q, k, v = qkv.unbind(0)"),
    "chunk_sdpa": (ChunkHeads, "qkv(x).chunk(3, -1), view+transpose heads, F.sdpa"),
    "slice_heads": (SliceHeads, "heads by x[..., i*D:(i+1)*D] slices, softmax(q k^T) v, cat"),
    "split_heads": (SplitHeadAxis, "view [B,T,3H,D].transpose(1,2), torch.split on the head axis"),
    "sdpa": (Sdpa, "F.scaled_dot_product_attention on reshape+permute heads"),
    "mha": (Mha, "nn.MultiheadAttention(batch_first=True)"),
    "encoder_layer": (EncoderLayer, "nn.TransformerEncoderLayer(batch_first=True), mean, Linear"),
}
VARIANTS = [("torchscript", False, 14), ("dynamo", True, 18)]
OPSET_OVERRIDE = {"encoder_layer": {"torchscript": 17}}  # LayerNormalization


def tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(T, dtype=np.float64)[None, :, None]
    freq = rng.uniform(0.05, 0.4, (n, 1, C))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, C))
    x = np.sin(2 * np.pi * freq * t + phase) + rng.normal(0, 0.1, (n, T, C))
    return x.astype(np.float32)


def export(model: nn.Module, x: torch.Tensor, path: Path, dynamo: bool, opset: int) -> None:
    common = {"input_names": ["input"], "output_names": ["output"], "opset_version": opset}
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes=({0: torch.export.Dim("N")},), **common)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False,
                              dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, **common)


def export_checked(model: nn.Module, x: np.ndarray, expected: np.ndarray, path: Path,
                   dynamo: bool, opset: int) -> str:
    """Export `model` (traced on x[:2], batch dynamic), check the file (onnx full check,
    onnxruntime on all of x within 1e-4 of torch's `expected`, at most MAX_BYTES) and return its
    README table row."""
    export(model, torch.from_numpy(x[:2]), path, dynamo, opset)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    diff = float(np.abs(got - expected).max())
    if got.shape != expected.shape or diff > 1e-4:
        raise SystemExit(f"{path.name}: onnxruntime differs from torch ({diff:.3g})")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path.name} is {size} bytes (limit {MAX_BYTES})")
    got_opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    ops = ", ".join(dict.fromkeys(n.op_type for n in m.graph.node))
    exporter = "torch.onnx dynamo=True" if dynamo else "torch.onnx TorchScript"
    print(f"{path.name:40s} opset {got_opset:2d} {size:6d} B {ops}")
    return f"| {path.name} | {exporter} | {got_opset} | {size} | {ops} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    rows, layers = [], []
    for i, (name, (cls, text)) in enumerate(MODELS.items()):
        rng = np.random.default_rng(SEED + i)
        torch.manual_seed(SEED + i)
        x = tokens(rng, N_SAMPLES)
        model = cls().eval()
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.savez_compressed(args.out / f"{name}.npz", input=x)
        layers.append(f"| {name} | {list(x.shape)} | {text} |")
        for tag, dynamo, opset in VARIANTS:
            opset = OPSET_OVERRIDE.get(name, {}).get(tag, opset)
            path = args.out / f"{name}.{tag}.onnx"
            rows.append(export_checked(model, x, expected, path, dynamo, opset))
    head = f"""# Attention idioms exported from torch

Made by `tools/export_attention_fixtures.py` (torch {torch.__version__}, onnx {onnx.__version__},
onnxruntime {ort.__version__}, seed {SEED} + model index); do not edit by hand, re-run the tool.
T={T} tokens, C={C} channels, H={H} heads, torch's default init, eval mode. Every model has input
"input" [N, {T}, {C}] with a dynamic batch axis "N" and output "output"; `<name>.npz` holds
"input": float32 [{N_SAMPLES}, {T}, {C}] (tests calibrate on the first 48 and
measure on the last 16), on which onnxruntime matched torch (max abs difference < 1e-4).

| model | input (the .npz) | torch idiom |
|---|---|---|
{chr(10).join(layers)}

| file | exporter | opset | bytes | ops |
|---|---|---|---|---|
"""
    (args.out / "README.md").write_text(head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
