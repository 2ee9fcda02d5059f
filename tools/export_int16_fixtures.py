"""Export the ONNX fixture of `compile --int16` (issue 13 item 2): tests/models/int16.

outlier_ln: x [N, 32] -> Linear(32, 64) -> LayerNorm(64) -> Linear(64, 10). The first
Linear's output has 4 outlier channels (its rows for them scaled so those channels are
OUTLIER x the others' magnitude, the transformer "outlier feature" case): in int8 their range
sets the scale of the LayerNorm input, so the other 60 channels keep only a few levels.
Weights are seeded random (the numbers matter, not training). outlier_ln.npz: "calib"
[64, 32] and "test" [200, 32], N(0, 1) (seeds 1 and 2).

Run: python tools/export_int16_fixtures.py [--outlier 20]  (torch, onnxscript): outlier_ln.onnx
with the TorchScript exporter (opset 17), outlier_ln.dynamo.onnx with dynamo; both have one
LayerNormalization, which microq imports as one LayerNorm.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "tests" / "models" / "int16"


class OutlierLN(nn.Module):
    def __init__(self, outlier: float):
        super().__init__()
        g = torch.Generator().manual_seed(13)
        self.fc1 = nn.Linear(32, 64)
        self.ln = nn.LayerNorm(64)
        self.fc2 = nn.Linear(64, 10)
        with torch.no_grad():
            for m in (self.fc1, self.fc2):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / np.sqrt(m.in_features))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            self.fc1.weight[[5, 17, 40, 58]] *= outlier
            self.fc1.bias[[5, 17, 40, 58]] *= outlier
            self.ln.weight.copy_(1 + 0.1 * torch.randn(64, generator=g))
            self.ln.bias.copy_(0.1 * torch.randn(64, generator=g))

    def forward(self, x):
        return self.fc2(self.ln(self.fc1(x)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--outlier", type=float, default=20.0)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    net = OutlierLN(args.outlier).eval()
    path = OUT / "outlier_ln.onnx"
    torch.onnx.export(net, torch.zeros(1, 32), str(path), input_names=["input"],
                      output_names=["output"], opset_version=17, dynamo=False,
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    dyn = OUT / "outlier_ln.dynamo.onnx"  # the dynamo exporter's form (opset 18)
    torch.onnx.export(net, (torch.zeros(1, 32),), str(dyn), input_names=["input"],
                      output_names=["output"], dynamo=True,
                      dynamic_shapes={"x": {0: torch.export.Dim("N")}}, external_data=False)
    calib = np.random.default_rng(1).normal(0, 1, (64, 32)).astype(np.float32)
    test = np.random.default_rng(2).normal(0, 1, (200, 32)).astype(np.float32)
    np.savez_compressed(OUT / "outlier_ln.npz", calib=calib, test=test)
    print(f"wrote {path} ({path.stat().st_size} B), outlier x{args.outlier}")


if __name__ == "__main__":
    main()
