"""Tool (outside the package): export the static-shape torch models of tests/models/static/ —
models without a batch axis, the batch rule's other half (a static dim 0 > 1 is data).

Both are exported with fixed shapes (no dynamic axes) by the TorchScript exporter (opset 17)
and the dynamo exporter (opset 18):
  nobatch_kws  x [49, 10] (49 frames of 10 features, no batch axis at all): x.T, an unbatched
               Conv1d(10, 16, 3) + ReLU (torch adds and removes the batch itself), .T, Linear
               (Gemm) + Tanh, @ a parameter (MatMul by a constant) -> [47, 4]
  static2      x [2, 3, 4] (a static dim 0 of 2 that is data): softmax over dim 0, split on
               dim 0, cat on dim 0, LayerNorm over the last two dims, argmax-free -> [2, 3, 4]
Each gets <name>.npz with "input" float32 [16, *shape]: 16 samples, each a whole tensor.
Every file is checked with onnx.checker and run in onnxruntime against torch.
Needs torch and onnxscript (not dependencies of microq).

Usage: python tools/export_static_fixtures.py [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "static"
SEED = 160
N = 16
VARIANTS = [("torchscript", False, 17), ("dynamo", True, 18)]


class NoBatchKws(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(10, 16, 3)
        self.fc = nn.Linear(16, 8)
        self.proj = nn.Parameter(torch.randn(8, 4) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [49, 10], no batch axis
        h = torch.relu(self.conv(x.transpose(0, 1)))  # unbatched Conv1d: [16, 47]
        return torch.tanh(self.fc(h.transpose(0, 1))) @ self.proj  # [47, 4]


class Static2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm([3, 4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [2, 3, 4]: dim 0 is data
        s = torch.softmax(x, dim=0)
        a, b = s.split(1, dim=0)
        y = torch.cat([b * 2.0 - a, a + x[1:2]], dim=0)
        return self.norm(y)


MODELS = {"nobatch_kws": (NoBatchKws, (49, 10)), "static2": (Static2, (2, 3, 4))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, (cls, shape)) in enumerate(MODELS.items()):
        torch.manual_seed(SEED + i)
        model = cls().eval()
        rng = np.random.default_rng(SEED + i)
        xs = rng.normal(size=(N, *shape)).astype(np.float32)
        np.savez(args.out / f"{name}.npz", input=xs)
        for tag, dynamo, opset in VARIANTS:
            path = args.out / f"{name}.{tag}.onnx"
            torch.onnx.export(model, (torch.from_numpy(xs[0]),), str(path), dynamo=dynamo,
                              opset_version=opset, input_names=["input"],
                              output_names=["output"], external_data=False)
            m = onnx.load(str(path))
            onnx.checker.check_model(m)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            with torch.no_grad():
                ref = np.stack([model(torch.from_numpy(x)).numpy() for x in xs])
            got = np.stack([sess.run(None, {sess.get_inputs()[0].name: x})[0] for x in xs])
            err = float(np.abs(got - ref).max())
            assert err < 1e-4, (path, err)
            dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
            ops = list(dict.fromkeys(n.op_type for n in m.graph.node))
            rows.append(f"| {path.name} | {tag} | {opset} | {dims} | {', '.join(ops)} |")
    readme = [
        "# Static-shape models (no batch axis)", "",
        "Made by `tools/export_static_fixtures.py` (do not edit by hand). Exported with fixed",
        "shapes, no dynamic axes: microq reads a static dim 0 > 1 as data, so these compile",
        "with their shapes exactly as given and one sample is the whole input tensor. Each",
        "`<name>.npz` holds \"input\" float32 [16, *input shape].", "",
        "| file | exporter | opset | input | ops |", "|---|---|---|---|---|", *rows, ""]
    (args.out / "README.md").write_text("\n".join(readme))


if __name__ == "__main__":
    main()
