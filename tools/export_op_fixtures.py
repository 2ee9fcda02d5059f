"""Tool (outside the package): export the small torch models of tests/models/ops/ (the issue-8
idioms: instance and group normalization, ...) with both torch exporters.

Each model is exported with the TorchScript exporter (dynamo=False) at opsets 13 and 17 and the
dynamo exporter at opsets 18 and 21 (GroupNorm: Reshape -> InstanceNormalization -> Reshape ->
Mul -> Add up to 18, GroupNormalization at 21), all with a dynamic batch axis "N"; each gets
tests/models/ops/<name>.npz with "input" float32 [16, ...]. Every file is checked with
onnx.checker and run in onnxruntime against torch, and tests/models/ops/README.md is rewritten.
Needs torch and onnxscript (not dependencies of microq).

Usage: python tools/export_op_fixtures.py [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from export_test_fixtures import MAX_BYTES, N_SAMPLES, check, export, op_summary, signals
from export_test_fixtures import smooth_images
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "ops"
SEED = 80
# (file tag, dynamo, opset)
VARIANTS = [("torchscript", False, 13), ("torchscript_opset17", False, 17),
            ("dynamo", True, 18), ("dynamo_opset21", True, 21)]


class GroupNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gn1 = nn.GroupNorm(4, 16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.gn2 = nn.GroupNorm(2, 8, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,3,12,12]
        x = F.relu(self.gn1(self.conv1(x)))
        return self.gn2(self.conv2(x))  # [N,8,12,12]


class InstanceNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.in1 = nn.InstanceNorm2d(16, affine=True)
        self.conv2 = nn.Conv2d(16, 8, 3, stride=2, padding=1)
        self.in2 = nn.InstanceNorm2d(8)  # affine=False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,3,12,12]
        x = F.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(x))  # [N,8,6,6]


class Norm1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(4, 8, 5, padding=2)
        self.in1 = nn.InstanceNorm1d(8, affine=True)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,64]
        x = F.relu(self.in1(self.conv1(x)))
        return self.gn(self.conv2(x))  # [N,8,64]


class PReluNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.act1 = nn.PReLU(16)  # per channel
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.act2 = nn.PReLU()  # one slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,3,10,10]
        return self.act2(self.conv2(self.act1(self.conv1(x))))  # [N,8,10,10]


class MinMaxNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 8, 3, padding=1)
        self.register_buffer("floor", torch.linspace(-0.4, 0.2, 8).reshape(8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,3,10,10]
        a, b = self.conv_a(x), self.conv_b(x)
        m = torch.minimum(torch.maximum(a, b), torch.tensor(0.6))  # two activations; a scalar
        return torch.cat([m, torch.maximum(a, self.floor)], 1)  # per-channel constant


class ReduceNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 16, 3, padding=1)
        self.pool = nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,8,8]
        y = self.conv(x)
        return torch.cat([torch.amax(y, dim=(2, 3)), self.pool(y).flatten(1),
                          torch.amin(y, dim=(2, 3)),
                          torch.amax(y, dim=1, keepdim=True).flatten(1)], 1)  # [N, 112]


class ArgMaxNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,3,12,12]
        y = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).flatten(1)
        return torch.argmax(self.fc(y), dim=1)  # [N] int64


# name -> (model class, input maker, torch layers for the README)
MODELS = {
    "groupnorm_net": (GroupNormNet, lambda r: smooth_images(r, N_SAMPLES, 3, 12, 12),
                      "Conv2d, GroupNorm(4, 16), ReLU, Conv2d, GroupNorm(2, 8, affine=False)"),
    "instancenorm_net": (InstanceNormNet, lambda r: smooth_images(r, N_SAMPLES, 3, 12, 12),
                         "Conv2d, InstanceNorm2d(16, affine=True), ReLU, Conv2d s2, "
                         "InstanceNorm2d(8)"),
    "norm1d_net": (Norm1dNet, lambda r: signals(r, N_SAMPLES, 4, 64),
                   "Conv1d, InstanceNorm1d(8, affine=True), ReLU, Conv1d, GroupNorm(2, 8) on "
                   "[N, 8, 64]"),
    "prelu_net": (PReluNet, lambda r: smooth_images(r, N_SAMPLES, 3, 10, 10) * 2 - 1,
                  "Conv2d, PReLU(16) (per channel), Conv2d, PReLU() (one slope)"),
    "minmax_net": (MinMaxNet, lambda r: smooth_images(r, N_SAMPLES, 3, 10, 10) * 2 - 1,
                   "torch.maximum of two convs, torch.minimum with a scalar, torch.maximum with "
                   "a per-channel constant [8, 1, 1], cat"),
    "reduce_net": (ReduceNet, lambda r: smooth_images(r, N_SAMPLES, 4, 8, 8) * 2 - 1,
                   "Conv2d, torch.amax(dim=(2, 3)), AdaptiveMaxPool2d(1), torch.amin(dim=(2, 3)), "
                   "torch.amax(dim=1, keepdim=True), cat"),
    "argmax_net": (ArgMaxNet, lambda r: smooth_images(r, N_SAMPLES, 3, 12, 12) * 2 - 1,
                   "Conv2d s2, ReLU, adaptive_avg_pool2d(1), Linear(16, 10), torch.argmax(dim=1) "
                   "(int64 output)"),
}


def init_model(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Random conv biases and affine norm parameters, so gamma and beta are not 1 and 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.uniform_(-0.2, 0.2, generator=gen)
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(-0.3, 0.6, generator=gen)
            if isinstance(m, (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d)) and m.affine:
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.3, 0.3, generator=gen)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    rows, layers = [], []
    for i, (name, (cls, make_input, layer_text)) in enumerate(MODELS.items()):
        rng = np.random.default_rng(SEED + i)
        torch.manual_seed(SEED + i)
        gen = torch.Generator().manual_seed(SEED + i)
        x = make_input(rng).astype(np.float32)
        model = init_model(cls(), gen)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.savez_compressed(args.out / f"{name}.npz", input=x)
        layers.append(f"| {name} | {list(x.shape)} | {layer_text} |")
        for tag, dynamo, opset in VARIANTS:
            path = args.out / f"{name}.{tag}.onnx"
            export(model, torch.from_numpy(x[:2]), path, dynamo, opset, None)
            diff = check(path, x, expected)
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise SystemExit(f"{path.name} is {size} bytes (limit {MAX_BYTES})")
            got_opset, ops = op_summary(path)
            exporter = "torch.onnx dynamo=True" if dynamo else "torch.onnx TorchScript"
            rows.append(f"| {path.name} | {exporter} | {got_opset} | {size} | {ops} |")
            print(f"{path.name:48s} opset {got_opset:2d} {size:6d} B  max|ort-torch| {diff:.1e}")
    write_readme(args.out, layers, rows)


def write_readme(out: Path, layers: list[str], rows: list[str]) -> None:
    head = f"""# Op fixtures exported from torch (issue 8 idioms)

Made by `tools/export_op_fixtures.py` (torch {torch.__version__}, onnx {onnx.__version__},
onnxruntime {ort.__version__}, seed {SEED} + model index); do not edit by hand, re-run the tool.
Weights: torch's default init, conv biases U(-0.2, 0.2), affine norm gamma U(0.5, 1.5) and beta
U(-0.3, 0.3), PReLU slopes U(-0.3, 0.6). Every model has input "input" with a dynamic batch
axis "N" and output "output"; `<name>.npz` holds "input": float32 [16, ...], the samples
onnxruntime was checked against torch on (max abs difference < 1e-4).
tests/test_op_fixtures.py compiles every file.
Exporter forms: TorchScript writes GroupNorm as Reshape [N, G, -1] -> InstanceNormalization
(scale 1, bias 0 per group) -> Reshape (to Shape(x)) -> Mul gamma [C, 1, 1] -> Add beta at
every opset; the dynamo exporter does the same at opset 18 and writes GroupNormalization
(per-channel scale and bias) at opset 21. AdaptiveMaxPool2d(1) is MaxPool in TorchScript and
ReduceMax (keepdims 1) under dynamo; torch.amax/amin are ReduceMax/ReduceMin with axes as an
attribute (opset 13) or an input (opset >= 18). argmax_net's output is ArgMax's int64 index.

| model | input (the .npz) | torch layers |
|---|---|---|
{chr(10).join(layers)}

| file | exporter | opset | bytes | ops |
|---|---|---|---|---|
"""
    (out / "README.md").write_text(head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
