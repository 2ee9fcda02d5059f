"""Tool (outside the package): train and export the labelled attention fixtures in
tests/models/attention/trained/.

The random-init idioms in tests/models/attention/ measure only SQNR; these are small sequence
classifiers trained (fixed seed, a few seconds of CPU) on a synthetic task that only attention
solves: T tokens of C channels (Gaussian distractors plus a fixed sinusoidal position code), two of
them with a marker vector added, each marker drawn from {A, B}; the label is (kind of the earlier
marker, kind of the later one), 4 classes, so for AB vs BA the model must compare positions.
A mean-pool of the inputs alone cannot tell AB from BA.

Models: "mha_cls" = Linear embed, nn.MultiheadAttention(batch_first=True) + residual, LayerNorm,
mean over tokens, Linear; "encoder_cls" = Linear embed, nn.TransformerEncoderLayer(batch_first=
True), mean, Linear. Exported with TorchScript (dynamo=False, opset 17) and dynamo (opset 18),
dynamic batch "N". <name>.npz holds "calib" [64, T, C], "input" [400, T, C] (held out), both
int8 codes of the float tokens (token = code / 16), and "label" int64 [400]. Every file is
checked with onnx.checker and onnxruntime against torch; README.md there is rewritten. Needs
torch (not a dependency of microq).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from export_attention_fixtures import export_checked  # same folder (tools/)
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "attention" / "trained"
SEED = 200
T, C, H, CLASSES = 12, 16, 2, 4
N_TRAIN, N_CALIB, N_TEST = 8192, 64, 400
STEPS, BATCH = 600, 128
GRID = 16  # tokens are multiples of 1/GRID


def task(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens [n, T, C] and labels [n]; the marker and position vectors are fixed (seed SEED)."""
    fixed = np.random.default_rng(SEED)
    markers = fixed.normal(0, 1, (2, C))
    markers *= 2.5 / np.linalg.norm(markers, axis=1, keepdims=True) * np.sqrt(C) / 4
    pos = np.arange(T)[:, None] / 10000 ** (np.arange(0, C, 2)[None, :] / C)
    code = np.zeros((T, C))
    code[:, 0::2], code[:, 1::2] = np.sin(pos), np.cos(pos)
    x = rng.normal(0, 0.5, (n, T, C)) + 0.5 * code
    kinds = rng.integers(0, 2, (n, 2))
    label = kinds[:, 0] * 2 + kinds[:, 1]
    for i in range(n):
        a, b = np.sort(rng.choice(T, 2, replace=False))
        x[i, a] += markers[kinds[i, 0]]
        x[i, b] += markers[kinds[i, 1]]
    # on a 1/16 grid so the .npz stores int8 codes (x = code / 16) and stays small
    code8 = np.clip(np.round(x * GRID), -127, 127).astype(np.int8)
    return code8, label.astype(np.int64)


def decode(code8: np.ndarray) -> np.ndarray:
    return code8.astype(np.float32) / GRID


class MhaCls(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(C, C)
        self.mha = nn.MultiheadAttention(C, H, batch_first=True)
        self.norm = nn.LayerNorm(C)
        self.head = nn.Linear(C, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x)
        y = self.norm(e + self.mha(e, e, e, need_weights=False)[0])
        return self.head(y.mean(dim=1))


class EncoderCls(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(C, C)
        self.layer = nn.TransformerEncoderLayer(C, H, dim_feedforward=32, dropout=0.0,
                                                batch_first=True)
        self.head = nn.Linear(C, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(self.embed(x)).mean(dim=1))


MODELS = {
    "mha_cls": (MhaCls,
                "Linear, nn.MultiheadAttention(batch_first=True) + x, LayerNorm, mean, Linear"),
    "encoder_cls": (EncoderCls,
                    "Linear, nn.TransformerEncoderLayer(batch_first=True), mean, Linear"),
}
VARIANTS = [("torchscript", False, 17), ("dynamo", True, 18)]


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(STEPS):
        idx = torch.randint(0, len(x), (BATCH,), generator=g)
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    rows, layers = [], []
    for i, (name, (cls, text)) in enumerate(MODELS.items()):
        if name not in args.only:
            continue
        rng = np.random.default_rng(SEED + 1 + i)
        torch.manual_seed(SEED + 1 + i)
        xtr, ytr = task(rng, N_TRAIN)
        calib, _ = task(rng, N_CALIB)
        xte8, yte = task(rng, N_TEST)
        xtr, xte = decode(xtr), decode(xte8)
        model = cls()
        train(model, xtr, ytr, SEED + 1 + i)
        with torch.no_grad():
            expected = model(torch.from_numpy(xte)).numpy()
        acc = float(np.mean(expected.argmax(1) == yte))
        print(f"{name}: float top-1 on the {N_TEST} held-out samples {acc:.4f}")
        np.savez_compressed(args.out / f"{name}.npz", calib=calib, input=xte8, label=yte)
        layers.append(f"| {name} | {text} | {100 * acc:.2f} % |")
        for tag, dynamo, opset in VARIANTS:
            path = args.out / f"{name}.{tag}.onnx"
            rows.append(export_checked(model, xte, expected, path, dynamo, opset))
    head = f"""# Trained attention classifiers exported from torch

Made by `tools/train_attention_fixtures.py` (torch {torch.__version__}, onnx {onnx.__version__},
onnxruntime {ort.__version__}, seed {SEED}); do not edit by hand, re-run the tool.
Task: T={T} tokens of C={C} channels (Gaussian distractors + a sinusoidal position code), two
with a marker of kind A or B added; label = (earlier kind, later kind), {CLASSES} classes, so AB
vs BA needs attention across positions. H={H} heads, Adam {STEPS} steps of {BATCH}, eval mode.
Input "input" [N, {T}, {C}] (dynamic "N"), output "output" [N, {CLASSES}] logits.
`<name>.npz`: "calib" [{N_CALIB}, {T}, {C}] and "input" [{N_TEST}, {T}, {C}] (held out, never
trained on), int8 codes of the float32 tokens (token = code / {GRID}; training used the same grid),
and "label" int64 [{N_TEST}]; onnxruntime matched torch on the decoded "input" (max abs
difference < 1e-4).

| model | torch | float top-1 (held out) |
|---|---|---|
{chr(10).join(layers)}

| file | exporter | opset | bytes | ops |
|---|---|---|---|---|
"""
    (args.out / "README.md").write_text(head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
