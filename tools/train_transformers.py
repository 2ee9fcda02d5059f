"""Tool (outside the package): train the two tiny transformer test models and export them.

- vit_digits: a ViT on scikit-learn's digits (8x8 -> 16 patches of 2x2, width 32, 2 encoder
  blocks with 2-head attention and an exact-GELU MLP, mean over tokens, linear head). 80/20
  stratified split (seed 0), the same split as the demo CNN.
- kws_transformer: a keyword-spotting transformer on sww01's 45 labelled spectrograms (30 frames
  x 40 mel bins -> 30 tokens, width 32, 1 encoder block with 2 heads and a tanh-GELU MLP). With
  45 samples there is no held-out set: it is trained and tested on the same 45 (train = test).

Writes into tests/models/transformers/ (TorchScript exporter at opset 17, so LayerNormalization appears; GELU
is the Erf or the tanh decomposition): vit_digits.onnx with vit_digits_calib.npz (200 training
samples) and vit_digits_test.npz (the 360 held-out ones, with labels), kws_transformer.onnx with
kws_transformer_data.npz (the 45 samples and labels: calibration and test), and import fixtures
of the ViT:
vit_digits.dynamo.onnx (dynamo exporter, opset 18), vit_digits.opset13.onnx (TorchScript at
opset 13: the decomposed LayerNorm) and vit_digits.opset20.dynamo.onnx (the Gelu op).
Needs torch, which is NOT a dependency of microq: run it from a separate venv, e.g.

    /work/torchenv/bin/python tools/train_transformers.py

Deterministic: fixed seeds, deterministic algorithms, one CPU thread.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "models" / "transformers"
SWW = ROOT.parent / "shared" / "models" / "data" / "sww01_calibration_samples.npz"
SEED = 0
N_CALIB = 200


class Attention(nn.Module):
    """Multi-head self-attention written out (qkv Linear, Split, per-head MatMul, Softmax)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dh = heads, dim // heads
        self.scale = self.dh**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # Split
        q, k, v = (z.reshape(b, t, self.heads, self.dh).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) * self.scale  # [B, H, T, T]
        attn = scores.softmax(dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(o)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, gelu: str) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate=gelu),
                                 nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Encoder(nn.Module):
    """Tokens [B, T, D] + positional embedding -> blocks -> LayerNorm -> mean over tokens."""

    def __init__(self, tokens: int, dim: int, depth: int, heads: int, hidden: int, gelu: str,
                 classes: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden, gelu) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.blocks(tokens + self.pos)
        return self.head(self.norm(x).mean(dim=1))


class ViT(nn.Module):
    """[N, 1, 8, 8] digit -> 10 logits; 2x2 patches by a strided conv (timm's PatchEmbed)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, 32, 2, stride=2)
        self.encoder = Encoder(16, 32, 2, 2, 64, "none", 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.patch(x).flatten(2).transpose(1, 2))


class KWS(nn.Module):
    """[N, 30, 40] spectrogram (frames x mel bins) -> 3 logits (marvin, silence, unknown)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(40, 32)
        self.encoder = Encoder(30, 32, 1, 2, 64, "tanh", 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(x))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)


def sww_data() -> tuple[np.ndarray, np.ndarray]:
    z = np.load(SWW)
    return z["specs"][:, :, 0, :].astype(np.float32), z["labels"].astype(np.int64)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float,
          shift: bool) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * -(-len(xt) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), 32):
            idx = perm[i : i + 32]
            xb = xt[idx]
            if shift:  # one-pixel random shifts of the digits
                dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
                xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if epoch % 20 == 19 or epoch == epochs - 1:
            print(f"epoch {epoch + 1:3d}  loss {total / len(xt):.4f}")
    model.eval()


def export(model: nn.Module, example: torch.Tensor, path: Path, dynamo: bool, opset: int) -> None:
    kw = dict(input_names=["input"], output_names=["logits"], opset_version=opset)
    if dynamo:
        torch.onnx.export(model, (example,), str(path), dynamo=True, optimize=True,
                          external_data=False, dynamic_shapes=({0: torch.export.Dim("N", max=1024)},), **kw)
    else:
        torch.onnx.export(model, (example,), str(path), dynamo=False, do_constant_folding=True,
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **kw)


def check(path: Path, model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max())
    acc = float((got.argmax(1) == y).mean())
    ops = sorted({n.op_type for n in onnx.load(str(path)).graph.node})
    print(f"{path.name}: {path.stat().st_size} bytes, onnxruntime accuracy {acc:.4f} "
          f"(N={len(y)}), max |ort - torch| {diff:.2e}\n  ops: {', '.join(ops)}")
    assert diff < 1e-4, diff
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    seed_everything(SEED)
    x_tr, x_te, y_tr, y_te = digits_split()
    vit = ViT()
    print(f"vit_digits parameters: {sum(p.numel() for p in vit.parameters())}")
    train(vit, x_tr, y_tr, args.epochs, 3e-3, shift=True)
    ex = torch.zeros(1, 1, 8, 8)
    export(vit, ex, args.out / "vit_digits.onnx", False, 17)
    export(vit, ex, args.out / "vit_digits.opset13.onnx", False, 13)
    export(vit, ex, args.out / "vit_digits.dynamo.onnx", True, 18)
    export(vit, ex, args.out / "vit_digits.opset20.dynamo.onnx", True, 20)
    for name in ("vit_digits", "vit_digits.opset13", "vit_digits.dynamo",
                 "vit_digits.opset20.dynamo"):
        check(args.out / f"{name}.onnx", vit, x_te, y_te)
    calib_idx = np.sort(np.random.default_rng(SEED).choice(len(x_tr), N_CALIB, replace=False))
    np.savez_compressed(args.out / "vit_digits_calib.npz", input=x_tr[calib_idx])
    np.savez_compressed(args.out / "vit_digits_test.npz", input=x_te, label=y_te)

    seed_everything(SEED)
    x, y = sww_data()
    kws = KWS()
    print(f"kws_transformer parameters: {sum(p.numel() for p in kws.parameters())}")
    train(kws, x, y, args.epochs, 3e-3, shift=False)
    export(kws, torch.zeros(1, 30, 40), args.out / "kws_transformer.onnx", False, 17)
    check(args.out / "kws_transformer.onnx", kws, x, y)
    np.savez_compressed(args.out / "kws_transformer_data.npz", input=x, label=y)  # train = test


if __name__ == "__main__":
    main()
