"""Tool (outside the package): export the torch models of the spatial ops (Resize / Upsample,
ConvTranspose 1-D / 2-D, Conv3d) to tests/models/spatial/, both exporters.

Same conventions as tools/export_test_fixtures.py (whose export/check helpers it reuses):
TorchScript (dynamo=False, opset 13) and dynamo (opset 18), dynamic batch axis "N", input
"input", output "output", <name>.npz with "input" float32 [16, ...]; every file is checked with
onnx.checker and run in onnxruntime against torch, and tests/models/spatial/README.md is
rewritten. Needs torch (not a microq dependency): /work/main/.venv has it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_test_fixtures as base  # noqa: E402

OUT = base.OUT / "spatial"
SEED = 100


class ResizeNet(nn.Module):
    """Every F.interpolate / nn.Upsample form torch users write, on 2-D maps."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 8, 3, padding=1)
        self.down = nn.ModuleList([nn.Conv2d(8, 4, 3, stride=2, padding=1) for _ in range(2)])
        self.up_ac = nn.Upsample(size=(9, 9), mode="bilinear", align_corners=True)
        self.head = nn.Conv2d(24, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,6,6]
        x = F.relu(self.stem(x))  # [N,8,6,6]
        a = self.down[0](F.interpolate(x, scale_factor=2, mode="nearest"))  # [N,4,6,6]
        b = self.down[1](F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        c = F.interpolate(self.up_ac(x), size=(6, 6), mode="nearest")  # 9x9 -> 6x6
        d = F.interpolate(x, scale_factor=1.5, mode="nearest")  # [N,8,9,9]
        d = F.interpolate(d, size=(6, 6), mode="bilinear", align_corners=False)  # downsample
        return self.head(torch.cat([a, b, c, d], 1))  # [N,4,6,6]


class Resize1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(4, 6, 3, padding=1)
        self.head = nn.Conv1d(12, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,16]
        x = F.relu(self.stem(x))
        a = F.interpolate(x, scale_factor=2, mode="linear", align_corners=False)  # [N,6,32]
        b = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.head(torch.cat([a, b], 1))  # [N,4,16]


class ConvTransposeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(4, 8, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1, groups=8)  # depthwise
        self.mix = nn.ConvTranspose2d(8, 4, 3, padding=2, dilation=2, groups=2)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,5,5]
        x = F.relu(self.up1(x))  # [N,8,10,10]
        x = F.relu(self.up2(x))  # [N,8,20,20]
        return self.down(self.mix(x))  # [N,4,20,20] -> [N,4,10,10]


class ConvTranspose1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(4, 6, 5, stride=3, padding=2, output_padding=1)
        self.out = nn.ConvTranspose1d(6, 3, 3, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,4,12]
        return self.out(F.relu(self.up(x)))  # [N,6,35] -> [N,3,37]


class Conv3dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv3d(2, 4, 3, padding=1)
        self.c2 = nn.Conv3d(4, 6, 3, stride=2, padding=(1, 0, 1))
        self.dw = nn.Conv3d(6, 6, 3, padding=2, dilation=2, groups=6)
        self.fc = nn.Linear(6 * 3 * 2 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,2,6,6,6]
        x = F.relu(self.c1(x))  # [N,4,6,6,6]
        x = F.relu(self.c2(x))  # [N,6,3,2,3]
        x = F.relu(self.dw(x))  # [N,6,3,2,3]
        return self.fc(torch.flatten(x, 1))


def volumes(rng: np.random.Generator, n: int, c: int, d: int) -> np.ndarray:
    """Smooth 3-D inputs: a trilinear-upsampled coarse grid plus a little noise, in [0, 1]."""
    coarse = torch.from_numpy(rng.random((n, c, 3, 3, 3), np.float32))
    x = F.interpolate(coarse, size=(d, d, d), mode="trilinear", align_corners=True).numpy()
    return np.clip(x + rng.normal(0.0, 0.05, x.shape), 0.0, 1.0).astype(np.float32)


MODELS = {
    "resize_net": (ResizeNet, lambda r: base.smooth_images(r, base.N_SAMPLES, 4, 6, 6),
                   "Conv2d, F.interpolate x2 nearest / x2 bilinear (align_corners=False), "
                   "nn.Upsample(size=9, bilinear, align_corners=True), nearest 9->6, "
                   "x1.5 nearest, bilinear 9->6, cat, Conv2d 1x1"),
    "resize1d_net": (Resize1dNet, lambda r: base.signals(r, base.N_SAMPLES, 4, 16),
                     "Conv1d, F.interpolate x2 linear / x2 nearest, cat, Conv1d s2"),
    "convtranspose_net": (ConvTransposeNet,
                          lambda r: base.smooth_images(r, base.N_SAMPLES, 4, 5, 5),
                          "ConvTranspose2d k3 s2 p1 output_padding 1, ReLU, depthwise "
                          "ConvTranspose2d k4 s2 p1, ConvTranspose2d k3 p2 d2 groups 2, Conv2d s2"),
    "convtranspose1d_net": (ConvTranspose1dNet, lambda r: base.signals(r, base.N_SAMPLES, 4, 12),
                            "ConvTranspose1d k5 s3 p2 output_padding 1, ReLU, ConvTranspose1d k3"),
    "conv3d_net": (Conv3dNet, lambda r: volumes(r, base.N_SAMPLES, 2, 6),
                   "Conv3d k3 p1, ReLU, Conv3d k3 s2 p(1,0,1), depthwise Conv3d k3 p2 d2, "
                   "Flatten, Linear"),
}


def init_model(model: nn.Module, gen: torch.Generator) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.uniform_(-0.2, 0.2, generator=gen)
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
        model = init_model(cls(), torch.Generator().manual_seed(SEED + i))
        x = make_input(rng).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.savez_compressed(args.out / f"{name}.npz", input=x)
        layers.append(f"| {name} | {list(x.shape)} | {layer_text} |")
        for tag, dynamo, opset in (("torchscript", False, base.TS_OPSET),
                                   ("dynamo", True, base.DYNAMO_OPSET)):
            path = args.out / f"{name}.{tag}.onnx"
            base.export(model, torch.from_numpy(x[:2]), path, dynamo, opset, None)
            diff = base.check(path, x, expected)
            size = path.stat().st_size
            if size > base.MAX_BYTES:
                raise SystemExit(f"{path.name} is {size} bytes (limit {base.MAX_BYTES})")
            got_opset, ops = base.op_summary(path)
            exporter = "torch.onnx dynamo=True" if dynamo else "torch.onnx TorchScript"
            rows.append(f"| {path.name} | {exporter} | {got_opset} | {size} | {ops} |")
            print(f"{path.name:40s} opset {got_opset:2d} {size:6d} B  max|ort-torch| {diff:.1e}")
    import onnx
    import onnxruntime as ort

    head = f"""# Spatial-op models exported from torch

Made by `tools/export_spatial_fixtures.py` (torch {torch.__version__}, onnx {onnx.__version__},
onnxruntime {ort.__version__}, seed {SEED} + model index); do not edit by hand, re-run the tool.
Weights: torch's default init, biases U(-0.2, 0.2). Input "input" with a dynamic batch axis "N",
output "output"; `<name>.npz` holds "input": float32 [16, ...], the samples onnxruntime was
checked against torch on (max abs difference < 1e-4). Tested by tests/test_spatial_ops.py.

| model | input (the .npz) | torch layers |
|---|---|---|
"""
    table = "\n| file | exporter | opset | bytes | ops |\n|---|---|---|---|---|\n"
    (args.out / "README.md").write_text(head + "\n".join(layers) + "\n" + table
                                        + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
