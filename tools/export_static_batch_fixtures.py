"""Tool (outside the package): export the static-batch torch models of tests/models/static_batch/
— an image CNN exported from a data loader's batch (torch.onnx.export(model, images[:4])), whose
static dim 0 of 4 microq reads as the batch (it reaches a Conv at axis 0), and its batch-1 twin.

  cnn4  x [4, 3, 8, 8]: Conv2d(3, 8, 3, padding=1) + BatchNorm2d + ReLU, MaxPool2d(2),
        Conv2d(8, 8, 3, padding=1) + ReLU, x.view(x.size(0), -1) (the 4 is baked into the
        Reshape), Linear(128, 10) -> [4, 10]
  cnn1  the same weights exported with x [1, 3, 8, 8]
Both exporters: TorchScript (opset 17) and dynamo (opset 18), fixed shapes (no dynamic axes).
cnn.npz holds "input" float32 [48, 3, 8, 8]: 48 single images (samples without the batch).
Every file is checked with onnx.checker and run in onnxruntime against torch.
Needs torch and onnxscript (not dependencies of microq).

Usage: python tools/export_static_batch_fixtures.py [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "static_batch"
SEED = 170
N = 48
VARIANTS = [("torchscript", False, 17), ("dynamo", True, 18)]


class Cnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
        x = torch.relu(self.c2(x))
        return self.fc(x.view(x.size(0), -1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    model = Cnn()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    model.eval()
    xs = np.random.default_rng(SEED).normal(size=(N, 3, 8, 8)).astype(np.float32)
    np.savez(args.out / "cnn.npz", input=xs)
    with torch.no_grad():
        ref = model(torch.from_numpy(xs)).numpy()
    rows = []
    for b in (4, 1):
        for tag, dynamo, opset in VARIANTS:
            path = args.out / f"cnn{b}.{tag}.onnx"
            torch.onnx.export(model, (torch.from_numpy(xs[:b]),), str(path), dynamo=dynamo,
                              opset_version=opset, input_names=["input"],
                              output_names=["output"], external_data=False)
            m = onnx.load(str(path))
            onnx.checker.check_model(m)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = np.concatenate([sess.run(None, {"input": xs[i : i + b]})[0]
                                  for i in range(0, N, b)])
            err = float(np.abs(got - ref).max())
            assert err < 1e-4, (path, err)
            dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
            ops = list(dict.fromkeys(n.op_type for n in m.graph.node))
            rows.append(f"| {path.name} | {tag} | {opset} | {dims} | {', '.join(ops)} |")
    readme = [
        "# Static-batch models (a batch of images exported with fixed shapes)", "",
        "Made by `tools/export_static_batch_fixtures.py` (do not edit by hand). `cnn4.*` were",
        "exported with `images[:4]` (static dim 0 of 4, baked into the flatten's Reshape);",
        "microq reads that 4 as the batch because it reaches a Conv at axis 0, so they compile",
        "to the same C as their batch-1 twins `cnn1.*`. `cnn.npz` holds \"input\" float32",
        "[48, 3, 8, 8]: 48 single images.", "",
        "| file | exporter | opset | input | ops |", "|---|---|---|---|---|", *rows, ""]
    (args.out / "README.md").write_text("\n".join(readme))


if __name__ == "__main__":
    main()
