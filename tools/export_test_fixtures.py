"""Tool (outside the package): export the small torch models in tests/models/ for the importer.

Each model is exported with the TorchScript exporter (dynamo=False, opset 13) and the dynamo
exporter (dynamo=True), both with a dynamic batch axis "N", plus a few opset variants; each gets
tests/models/<name>.npz with "input" float32 [16, ...]. Every file is checked with onnx.checker and
run in onnxruntime against torch, and tests/models/README.md is rewritten. Needs torch, which is
NOT a dependency of microq: run it from the separate venv described in tools/train_digits_cnn.py.
"""

from __future__ import annotations

import argparse
import io
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "models"
SEED = 0
N_SAMPLES = 16
MAX_BYTES = 100_000
TS_OPSET = 13
# The dynamo exporter builds opset 18 graphs; asking it for 13 runs onnx's version converter,
# which has no Relu 14 -> 13 adapter, so the exporter falls back to 18 anyway.
DYNAMO_OPSET = 18


class Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 5, stride=2, padding=3, dilation=2)
        self.maxpool = nn.MaxPool1d(3, stride=2)
        self.avgpool = nn.AvgPool1d(3, stride=2)
        self.fc = nn.Linear(8 * 7, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,64]
        x = F.relu(self.conv(x))  # [N,8,31]
        x = self.avgpool(self.maxpool(x))  # [N,8,15] -> [N,8,7]
        return self.fc(torch.flatten(x, 1))


class GroupNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 0, 1, 0))  # left, right, top, bottom
        self.grouped = nn.Conv2d(4, 8, 3, groups=2, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8, bias=False)  # channel multiplier 2
        self.bn2 = nn.BatchNorm2d(16)
        self.down = nn.Conv2d(16, 8, 3, stride=3)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,15,15]
        x = self.act(self.bn1(self.grouped(self.pad(x))))  # [N,8,14,14]
        x = self.act(self.bn2(self.dw(x)))  # [N,16,14,14]
        x = F.pad(x, (0, 1, 0, 1))  # [N,16,15,15]
        return self.act(self.down(x))  # [N,8,5,5]


class ActNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(8 if i else 3, 8, 3, padding=1) for i in range(7)])
        self.acts = nn.ModuleList(
            [
                nn.LeakyReLU(0.1),
                nn.Hardswish(),
                nn.Hardsigmoid(),
                nn.SiLU(),
                nn.Sigmoid(),
                nn.Tanh(),
                nn.ELU(),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,3,8,8]
        for conv, act in zip(self.convs, self.acts):
            x = act(conv(x))
        return x


class PoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.maxpool = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 16 -> 8 (floor mode: 7)
        self.avg_incl = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True)
        self.avg_excl = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,16,16]
        x = self.maxpool(F.relu(self.conv(x)))  # [N,8,8,8]
        x = self.avg_excl(self.avg_incl(x))  # [N,8,4,4]
        a = self.gap(x)  # [N,8,1,1]
        b = torch.mean(F.relu(self.conv2(x)), dim=(2, 3), keepdim=True)
        return self.fc(torch.flatten(torch.cat([a, b], dim=1), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, r, 1)
        self.expand = nn.Conv2d(r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)  # [N,C,1,1]
        s = torch.sigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s  # broadcast over H, W


class ResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.se = SqueezeExcite(8, 4)
        self.side = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,3,8,8]
        x = F.relu(self.stem(x))
        y = self.conv2(F.relu(self.conv1(x)))
        x = F.relu(x + y)  # residual Add
        x = self.se(x)
        x = torch.cat([x, F.relu(self.side(x))], dim=1)  # [N,12,8,8]
        x = F.max_pool2d(x, 2)  # [N,12,4,4]
        return F.softmax(self.fc(torch.flatten(x, 1)), dim=1)


class ShapeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
        self.token_fc = nn.Linear(8, 8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm1d(72)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(72, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,6,6]
        x = F.relu(self.conv1(x))  # [N,8,6,6]
        t = x.flatten(2).transpose(1, 2)  # [N,36,8] tokens
        t = F.relu(self.token_fc(t))  # Linear over the last axis
        x = t.permute(0, 2, 1).reshape(-1, 8, 6, 6).contiguous()  # back to [N,8,6,6]
        x = self.conv2(x)  # [N,8,3,3]
        x = x.view(x.size(0), -1)  # Shape/Gather/Concat/Reshape in TorchScript
        return self.fc(self.drop(self.bn(x)))


def smooth_images(rng: np.random.Generator, n: int, c: int, h: int, w: int) -> np.ndarray:
    """Image-like inputs in [0,1]: a bilinear-upsampled coarse grid plus a little pixel noise."""
    coarse = torch.from_numpy(rng.random((n, c, max(2, h // 3), max(2, w // 3)), np.float32))
    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True).numpy()
    x = x + rng.normal(0.0, 0.05, x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def signals(rng: np.random.Generator, n: int, c: int, length: int) -> np.ndarray:
    """1-D sensor-like inputs: a few sines per channel plus noise, roughly in [-1.5, 1.5]."""
    t = np.arange(length, dtype=np.float64)[None, None, :]
    x = np.zeros((n, c, length))
    for _ in range(3):
        freq = rng.uniform(0.02, 0.25, (n, c, 1))
        phase = rng.uniform(0, 2 * np.pi, (n, c, 1))
        x += rng.uniform(0.2, 0.5, (n, c, 1)) * np.sin(2 * np.pi * freq * t + phase)
    return (x + rng.normal(0.0, 0.05, x.shape)).astype(np.float32)


# name -> (model class, input maker, torch layers for the README, extra variants as
# (file tag, opset, module classes exported as ONNX local functions))
MODELS = {
    "conv1d_net": (
        Conv1dNet,
        lambda r: signals(r, N_SAMPLES, 4, 64),
        "Conv1d k5 s2 p3 d2, ReLU, MaxPool1d(3,2), AvgPool1d(3,2), Flatten, Linear",
        [],
    ),
    "group_net": (
        GroupNet,
        lambda r: smooth_images(r, N_SAMPLES, 4, 15, 15),
        (
            "ZeroPad2d((1,0,1,0)), Conv2d groups=2, depthwise mult 2, BatchNorm2d, ReLU6, "
            "F.pad (0,1,0,1), Conv2d k3 s3"
        ),
        [],
    ),
    "act_net": (
        ActNet,
        lambda r: smooth_images(r, N_SAMPLES, 3, 8, 8) * 2 - 1,
        (
            "7 x Conv2d 3x3, each followed by LeakyReLU(0.1), Hardswish, Hardsigmoid, SiLU, "
            "Sigmoid, Tanh, ELU"
        ),
        [],
    ),
    "pool_net": (
        PoolNet,
        lambda r: smooth_images(r, N_SAMPLES, 4, 16, 16),
        (
            "MaxPool2d(3,2,ceil_mode), AvgPool2d(3,2,p1,count_include_pad=True), "
            "AvgPool2d(3,1,p1,count_include_pad=False), AdaptiveAvgPool2d(1), mean((2,3)), "
            "cat, Linear"
        ),
        [],
    ),
    "residual_net": (
        ResidualNet,
        lambda r: smooth_images(r, N_SAMPLES, 3, 8, 8),
        (
            "residual Add, squeeze-excitation x * sigmoid([N,C,1,1]), cat, max_pool2d, Flatten, "
            "Linear, softmax"
        ),
        [("torchscript_opset17_functions", 17, {SqueezeExcite})],
    ),
    "shape_net": (
        ShapeNet,
        lambda r: smooth_images(r, N_SAMPLES, 4, 6, 6),
        (
            "flatten(2).transpose, Linear on [N,36,8], permute+reshape, "
            "x.view(x.size(0), -1), BatchNorm1d on [N,72], Dropout (eval), Linear"
        ),
        [("torchscript_opset11", 11, None)],  # Unsqueeze axes as an attribute
    ),
}


def init_model(model: nn.Module, x: np.ndarray, gen: torch.Generator) -> nn.Module:
    """Random affine BN params, then running stats measured on `x` so BN is non-trivial but sane."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.uniform_(-0.2, 0.2, generator=gen)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.3, 0.3, generator=gen)
                m.momentum = None  # cumulative average over the calibration pass
        model.train()
        model(torch.from_numpy(x))
    return model.eval()


def export(model: nn.Module, x: torch.Tensor, path: Path, dynamo: bool, opset: int, fns) -> None:
    common = {"input_names": ["input"], "output_names": ["output"], "opset_version": opset}
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("N")},),
                external_data=False,
                **common,
            )
        else:
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                export_modules_as_functions=fns or False,
                **common,
            )


def check(path: Path, x: np.ndarray, expected: np.ndarray) -> float:
    """onnx.checker + onnxruntime vs torch; returns the max abs difference."""
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    diff = float(np.abs(got - expected).max())
    if got.shape != expected.shape or diff > 1e-4:
        raise SystemExit(f"{path.name}: onnxruntime differs from torch (max abs {diff:.3g})")
    return diff


def op_summary(path: Path) -> tuple[int, str]:
    model = onnx.load(str(path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    ops = list(dict.fromkeys(n.op_type for n in model.graph.node))
    for fn in model.functions:
        ops.append(f"{fn.name}{{{', '.join(dict.fromkeys(n.op_type for n in fn.node))}}}")
    return opset, ", ".join(ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    rows, layers = [], []
    for i, (name, (cls, make_input, layer_text, extras)) in enumerate(MODELS.items()):
        rng = np.random.default_rng(SEED + i)
        torch.manual_seed(SEED + i)
        gen = torch.Generator().manual_seed(SEED + i)
        x = make_input(rng).astype(np.float32)
        model = init_model(cls(), x, gen)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.savez_compressed(args.out / f"{name}.npz", input=x)
        layers.append(f"| {name} | {list(x.shape)} | {layer_text} |")
        variants = [("torchscript", False, TS_OPSET, None), ("dynamo", True, DYNAMO_OPSET, None)]
        variants += [(tag, False, opset, fns) for tag, opset, fns in extras]
        for tag, dynamo, opset, fns in variants:
            path = args.out / f"{name}.{tag}.onnx"
            export(model, torch.from_numpy(x[:2]), path, dynamo, opset, fns)
            diff = check(path, x, expected)
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise SystemExit(f"{path.name} is {size} bytes (limit {MAX_BYTES})")
            got_opset, ops = op_summary(path)
            exporter = "torch.onnx dynamo=True" if dynamo else "torch.onnx TorchScript"
            rows.append(f"| {path.name} | {exporter} | {got_opset} | {size} | {ops} |")
            print(f"{path.name:48s} opset {got_opset:2d} {size:6d} B  max|ort-torch| {diff:.1e}")
        print(f"{name}.npz input {x.shape} range [{x.min():.2f}, {x.max():.2f}]")
    write_readme(args.out, layers, rows)


def write_readme(out: Path, layers: list[str], rows: list[str]) -> None:
    head = f"""# Test models exported from torch

Made by `tools/export_test_fixtures.py` (torch {torch.__version__}, onnx {onnx.__version__},
onnxruntime {ort.__version__}, seed {SEED} + model index); do not edit by hand, re-run the tool.
Weights: torch's default init, biases U(-0.2, 0.2); BatchNorm gamma U(0.5, 1.5), beta U(-0.3, 0.3)
and running stats measured on the model's own inputs, then eval mode (so TorchScript and the
dynamo optimizer fold BN that follows a conv; shape_net's BatchNorm1d on [N, F] stays).
Every model has input "input" with a dynamic batch axis "N" and output "output". Each
`<name>.npz` holds "input": float32 [16, ...], the samples the tool checked onnxruntime against
torch on (max abs difference < 1e-4).
The dynamo exporter writes opset {DYNAMO_OPSET}: asked for opset 13 it runs onnx's version
converter, which has no Relu 14 -> 13 adapter. In torch 2.13 it emits no local functions;
`residual_net.torchscript_opset17_functions.onnx` (TorchScript, `export_modules_as_functions`)
is the model whose SqueezeExcite block is an ONNX local function.
TorchScript quirks kept on purpose (real exporter output): F.pad / ZeroPad2d become an
all-constant ConstantOfShape/Concat/Slice/Transpose/Cast subgraph feeding Pad (and
group_net.torchscript.onnx declares a wrong symbolic output shape [N, 8, N, ?]); x.view(x.size(0),
-1) becomes Shape/Gather/Unsqueeze/Concat/Reshape; opset 13 has no HardSwish, so Hardswish is
x * HardSigmoid(x). SiLU is x * Sigmoid(x) in both exporters.

| model | input (the .npz) | torch layers |
|---|---|---|
{chr(10).join(layers)}

| file | exporter | opset | bytes | ops (functions as name{{ops}}) |
|---|---|---|---|---|
"""
    (out / "README.md").write_text(head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
