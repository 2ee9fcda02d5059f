"""Tool (outside the package): train the bundled demo model, a tiny CNN on scikit-learn's digits.

Writes python/microq/assets/{digits_cnn.onnx, digits_calib.npz, digits_test.npz}. Needs torch,
which is NOT a dependency of microq: run it from a separate venv, e.g.

    python3 -m venv /work/torchenv
    /work/torchenv/bin/pip install torch==2.13.0 onnx onnxruntime numpy scikit-learn
    /work/torchenv/bin/python tools/train_digits_cnn.py

Deterministic: fixed seeds, deterministic algorithms, one CPU thread.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ASSETS = Path(__file__).resolve().parents[1] / "python" / "microq" / "assets"
SEED = 0
N_CALIB = 200


class DigitsCNN(nn.Module):
    """8x8 grey digit -> 10 class probabilities; ~5.5k parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.dw_bn = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 16, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))  # [N,16,8,8]
        y = F.relu(self.dw_bn(self.dw(x)))
        y = self.pw_bn(self.pw(y))
        x = F.relu(x + y)  # residual Add
        x = self.pool(x)  # [N,16,4,4]
        x = F.relu(self.conv2(x))  # [N,32,4,4]
        x = torch.flatten(self.gap(x), 1)  # [N,32]
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.logits(x), dim=1)


def seed_everything(seed: int) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as float32 [N,1,8,8] in [0,1]; 80/20 stratified split, seed 0."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return x_tr, x_te, y_tr, y_te


def train(model: DigitsCNN, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), 32):
            idx = perm[i : i + 32]
            # One-pixel random shifts: cheap augmentation that helps on 8x8 digits.
            dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
            xb = torch.roll(xt[idx], shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model.logits(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if epoch % 10 == 9 or epoch == epochs - 1:
            print(f"epoch {epoch + 1:3d}  loss {total / len(xt):.4f}")
    model.eval()


def export(model: DigitsCNN, path: Path) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=13,
        input_names=["input"],
        output_names=["probs"],
        dynamic_axes={"input": {0: "N"}, "probs": {0: "N"}},
        do_constant_folding=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args()

    seed_everything(SEED)
    x_tr, x_te, y_tr, y_te = load_split()
    model = DigitsCNN()
    print(f"parameters: {sum(p.numel() for p in model.parameters())}")
    train(model, x_tr, y_tr, args.epochs)
    with torch.no_grad():
        torch_acc = (model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean()

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "digits_cnn.onnx"
    export(model, onnx_path)
    calib_idx = np.random.default_rng(SEED).choice(len(x_tr), N_CALIB, replace=False)
    np.savez_compressed(args.out / "digits_calib.npz", input=x_tr[np.sort(calib_idx)])
    np.savez_compressed(args.out / "digits_test.npz", input=x_te, label=y_te)

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probs = sess.run(["probs"], {"input": x_te})[0]
    ort_acc = (probs.argmax(1) == y_te).mean()
    print(f"float test accuracy: torch {torch_acc:.4f}, onnxruntime {ort_acc:.4f} (N={len(y_te)})")
    print(f"max |sum(probs) - 1| = {np.abs(probs.sum(1) - 1).max():.2e}")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
