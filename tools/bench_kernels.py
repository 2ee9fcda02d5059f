"""Kernel instructions per MAC on emulated Cortex-M cores, against Arm's CMSIS-NN reference points.

Builds a small hand-written model folder (kernel_folder: one layer per case, each reading its own
model input and writing its own model output) and counts instructions with the QEMU plugin of
microq.runtime.profile. tests/test_kernel_perf.py uses the same folder builder for its
bit-exactness runs.

Usage: python tools/bench_kernels.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microq import ir, ops
from microq.qir import Conv3DParams, ConvParams, FCParams
from microq.quant.rules_norm import groupnorm_params
from microq.ref.arith import quantize_multiplier
from microq.ref.conv import conv2d, depthwise_conv2d
from microq.ref.conv3d import conv3d
from microq.ref.fc import fully_connected
from microq.ref.resize import resize_bilinear, resize_params
from microq.ref.transpose_conv import transpose_conv2d
from microq.runtime import profile

RUNTIME = Path(__file__).resolve().parents[1] / "c_runtime"
RUNTIME_FILES = ("include/mq_types.h", "include/mq_requant.h", "include/mq_conv.h",
                 "include/mq_fc.h", "include/mq_elementwise.h", "include/mq_softmax.h",
                 "src/mq_conv.c", "src/mq_fc.c", "src/mq_gemm.c", "src/mq_elementwise.c", "src/mq_softmax.c",
                 "src/mq_requant.c", "include/mq_groupnorm.h", "src/mq_groupnorm.c",
                 "src/mq_isqrt.c", "src/mq_transpose_conv.c", "src/mq_conv3d.c",
                 "src/mq_resize.c")
# bench kind -> the kernel of microq.ops.KERNELS it times (its C entry point and MAC count)
KIND_KERNEL = {"conv2d": "conv2d", "depthwise": "depthwise_conv2d", "fc": "fully_connected",
               "add": "add", "softmax": "softmax", "transpose_conv": "transpose_conv2d",
               "conv3d": "conv3d", "resize_bilinear": "resize_bilinear"}
KERNELS = {kind: ops.KERNELS[k].symbols[0] for kind, k in KIND_KERNEL.items()}


@dataclass(frozen=True)
class Layer:
    """One kernel call. in_shape/out_shape are one sample's: (H, W, C) for conv, (rows, K) for
    fully connected."""

    name: str
    kind: str  # a KERNELS key
    params: ConvParams | FCParams | Conv3DParams | dict
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def macs(self) -> int:
        """MACs; for add, softmax and resize, elements (the tables report instructions per
        element: the input's for add/softmax, the output's for resize)."""
        if self.kind in ("add", "softmax", "groupnorm"):
            return int(np.prod(self.in_shape))
        if self.kind == "resize_bilinear":
            return int(np.prod(self.out_shape))
        # one sample: batch 1 in front, as compile counts (microq.ops)
        return ops.kernel_macs(KIND_KERNEL[self.kind], [(1, *self.in_shape)],
                               [(1, *self.out_shape)], self.params)


def reference(layer: Layer, x: np.ndarray, rounding: str = "double") -> np.ndarray:
    """The numpy integer reference on N samples x [N, *in_shape] -> [N, *out_shape]."""
    if layer.kind == "fc":
        rows, k = layer.in_shape
        y = fully_connected(layer.params, x.reshape(-1, k), rounding)
        return y.reshape(x.shape[0], *layer.out_shape)
    if layer.kind == "resize_bilinear":
        return resize_bilinear(layer.params["tables"], x, layer.out_shape[:2])
    if layer.kind == "conv3d":
        return conv3d(layer.params, x, layer.out_shape[:3], rounding)
    fn = {"depthwise": depthwise_conv2d, "transpose_conv": transpose_conv2d}.get(layer.kind,
                                                                               conv2d)
    return fn(layer.params, x, layer.out_shape[:2], rounding)


def _c_array(ctype: str, name: str, values: np.ndarray) -> str:
    flat = [str(int(v)) for v in np.asarray(values).ravel()]
    rows = [", ".join(flat[i : i + 16]) for i in range(0, len(flat), 16)]
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    " + ",\n    ".join(rows) + "\n};"


def _elementwise_c(i: int, layer: Layer) -> tuple[list[str], str]:
    """add (the input added to itself, contiguous) and softmax over rows of the input."""
    f = f"L{i}_"
    p = layer.params
    if layer.kind == "add":
        n = int(np.prod(layer.in_shape))
        fields = ", ".join(str(int(p[k])) for k in (
            "input1_offset", "input1_multiplier", "input1_shift", "input2_offset",
            "input2_multiplier", "input2_shift", "left_shift", "output_offset",
            "output_multiplier", "output_shift", "act_min", "act_max"))
        defs = [f"static const mq_add_params {f}params = {{{fields}}};",
                f"static const mq_broadcast {f}bcast = {{1, {{1, 1, 1, 1, 1, {n}}}, "
                f"{{0, 0, 0, 0, 0, 1}}, {{0, 0, 0, 0, 0, 1}}}};"]
        call = f"mq_add_s8(&{f}params, &{f}bcast, inputs[{i}], inputs[{i}], outputs[{i}])"
    elif layer.kind == "groupnorm":
        spatial, c = layer.in_shape
        defs = [_c_array("int32_t", f + "mult", p.multiplier),
                _c_array("int32_t", f + "shift", p.shift),
                _c_array("int32_t", f + "bias", p.bias),
                f"static const mq_per_channel_quant {f}quant = {{{f}mult, {f}shift}};",
                f"static const mq_groupnorm_params {f}params = {{{p.groups}, {p.var_bits}, "
                f"{p.eps}, {p.output_offset}, {p.act_min}, {p.act_max}}};"]
        call = (f"mq_groupnorm_s8(&{f}params, &{f}quant, {f}bias, 1, {spatial}, {c}, "
                f"inputs[{i}], outputs[{i}])")
    else:
        rows, size = layer.in_shape
        defs = [f"static const mq_softmax_params {f}params = {{{p['input_multiplier']}, "
                f"{p['input_left_shift']}, {p['diff_min']}}};"]
        call = f"mq_softmax_s8(&{f}params, {rows}, {size}, inputs[{i}], outputs[{i}])"
    return defs, (f"    /* L{i} {layer.kind} \"{layer.name}\" */\n    status = {call};\n"
                  "    if (status != MQ_OK) {\n        return (int)status;\n    }\n")


def _call_text(i: int, layer: Layer, call: str) -> str:
    return (f"    /* L{i} {layer.kind} \"{layer.name}\" */\n    status = {call};\n"
            "    if (status != MQ_OK) {\n        return (int)status;\n    }\n")


def _resize_c(i: int, layer: Layer) -> tuple[list[str], str]:
    f = f"L{i}_"
    t = layer.params["tables"]
    defs = []
    for axis in ("y", "x"):
        for part in ("lo", "hi", "frac"):
            defs.append(_c_array("int32_t", f"{f}{axis}_{part}", getattr(t, f"{axis}_{part}")))
        defs.append(f"static const mq_resize_taps {f}{axis} = {{{f}{axis}_lo, {f}{axis}_hi, "
                    f"{f}{axis}_frac}};")
    for tag, d in (("in", (1, *layer.in_shape)), ("out", (1, *layer.out_shape))):
        defs.append(f"static const mq_dims {f}{tag} = {{{', '.join(str(int(v)) for v in d)}}};")
    return defs, _call_text(i, layer, f"mq_resize_bilinear_s8(&{f}in, &{f}y, &{f}x, &{f}out, "
                                      f"inputs[{i}], outputs[{i}])")


def _conv3d_c(i: int, layer: Layer) -> tuple[list[str], str]:
    p = layer.params
    f = f"L{i}_"
    defs = [_c_array("int8_t", f + "filter", p.filter),
            _c_array("int32_t", f + "mult", p.multiplier),
            _c_array("int32_t", f + "shift", p.shift), _c_array("int32_t", f + "bias", p.bias),
            f"static const mq_per_channel_quant {f}quant = {{{f}mult, {f}shift}};"]
    fields = ", ".join(str(int(getattr(p, k))) for k in Conv3DParams.__dataclass_fields__
                       if k not in ("multiplier", "shift", "filter", "bias"))
    defs.append(f"static const mq_conv3d_params {f}params = {{{fields}}};")
    for tag, d in (("in", (1, *layer.in_shape)), ("filter_dims", p.filter.shape),
                   ("out", (1, *layer.out_shape))):
        defs.append(f"static const mq_dims5 {f}{tag} = {{{', '.join(str(int(v)) for v in d)}}};")
    return defs, _call_text(i, layer, f"mq_conv3d_s8(&{f}params, &{f}quant, &{f}in, inputs[{i}], "
                                      f"&{f}filter_dims, {f}filter, {f}bias, &{f}out, "
                                      f"outputs[{i}])")


def _layer_c(i: int, layer: Layer) -> tuple[list[str], str]:
    """(definitions, call) of layer i; the call reads inputs[i] and writes outputs[i]."""
    if layer.kind in ("add", "softmax", "groupnorm"):
        return _elementwise_c(i, layer)
    if layer.kind == "resize_bilinear":
        return _resize_c(i, layer)
    if layer.kind == "conv3d":
        return _conv3d_c(i, layer)
    p = layer.params
    f = f"L{i}_"
    defs = [_c_array("int8_t", f + "filter", p.filter),
            _c_array("int32_t", f + "mult", p.multiplier),
            _c_array("int32_t", f + "shift", p.shift)]
    bias = "NULL"
    if p.bias is not None:
        defs.append(_c_array("int32_t", f + "bias", p.bias))
        bias = f + "bias"
    defs.append(f"static const mq_per_channel_quant {f}quant = {{{f}mult, {f}shift}};")
    if layer.kind == "fc":
        rows, k = layer.in_shape
        defs.append(f"static const mq_fc_params {f}params = {{{p.input_offset}, {p.filter_offset}, "
                    f"{p.output_offset}, {p.act_min}, {p.act_max}}};")
        dims = [(rows, 1, 1, k), (p.filter.shape[0], 1, 1, k), (rows, 1, 1, p.filter.shape[0])]
    else:
        defs.append(
            f"static const mq_conv_params {f}params = {{{p.stride_h}, {p.stride_w}, {p.pad_top}, "
            f"{p.pad_left}, {p.dilation_h}, {p.dilation_w}, {p.input_offset}, {p.output_offset}, "
            f"{p.act_min}, {p.act_max}, {p.ch_mult}}};")
        dims = [(1, *layer.in_shape), p.filter.shape, (1, *layer.out_shape)]
    for tag, d in zip(("in", "filter_dims", "out"), dims):
        defs.append(f"static const mq_dims {f}{tag} = {{{', '.join(str(int(v)) for v in d)}}};")
    call = (f"    /* L{i} {layer.kind} \"{layer.name}\" */\n"
            f"    status = {KERNELS[layer.kind]}(&{f}params, &{f}quant, &{f}in, inputs[{i}], "
            f"&{f}filter_dims, {f}filter, {bias}, &{f}out, outputs[{i}]);\n"
            "    if (status != MQ_OK) {\n        return (int)status;\n    }\n")
    return defs, call


def runtime_files() -> dict[str, bytes]:
    """The conv/fc runtime sources and every header they include (from include/ or src/)."""
    files: dict[str, bytes] = {}
    wanted = list(RUNTIME_FILES)
    while wanted:
        rel = wanted.pop(0)
        base = Path(rel).name
        if base in files:
            continue
        path = next(p for p in (RUNTIME / rel, RUNTIME / "src" / base) if p.exists())
        files[base] = path.read_bytes()
        wanted += [f"include/{h.decode()}" for h in
                   re.findall(rb'^\s*#\s*include\s+"([^"]+)"', files[base], flags=re.M)]
    return files


def kernel_folder(layers: list[Layer], out_dir: Path, name: str = "kbench",
                  rounding: str = "double") -> Path:
    """Write a model folder (the shape `microq compile` writes) that runs `layers`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    defs, calls = [], []
    for i, layer in enumerate(layers):
        d, c = _layer_c(i, layer)
        defs += d
        calls.append(c)
    proto = f"int {name}_invoke_multi(const int8_t *const *inputs, int8_t *const *outputs)"
    (out_dir / f"{name}.h").write_text(f"#include <stdint.h>\n{proto};\n")
    (out_dir / f"{name}.c").write_text(
        f'#include <stddef.h>\n#include "{name}.h"\n#include "mq_conv.h"\n#include "mq_fc.h"\n'
        '#include "mq_elementwise.h"\n#include "mq_softmax.h"\n#include "mq_groupnorm.h"\n'
        '#include "mq_transpose_conv.h"\n#include "mq_conv3d.h"\n#include "mq_resize.h"\n\n'
        + "\n".join(defs) + f"\n\n{proto}\n{{\n    mq_status status;\n" + "".join(calls)
        + "    return 0;\n}\n")
    for base, data in runtime_files().items():
        (out_dir / base).write_bytes(data)

    def spec(i: int, shape: tuple[int, ...]) -> dict:
        return {"name": f"t{i}", "shape": [1, *shape], "size": int(np.prod(shape)),
                "scale": 1.0, "zero_point": 0}

    meta = {"name": name, "rounding": rounding, "arena_size": 0,
            "macs": sum(layer.macs for layer in layers),
            "layers": [{"index": i, "name": layer.name, "kernel": layer.kind, "macs": layer.macs}
                       for i, layer in enumerate(layers)],
            "inputs": [spec(i, layer.in_shape) for i, layer in enumerate(layers)],
            "outputs": [spec(i, layer.out_shape) for i, layer in enumerate(layers)]}
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def conv_layer(rng: np.random.Generator, name: str, hw: tuple[int, int], cin: int, cout: int,
               k: tuple[int, int], stride: int = 1, pad: int = 0, dilation: int = 1,
               groups: int = 1, depthwise: bool = False, ch_mult: int = 1,
               bias: bool = True) -> Layer:
    """A conv2d / depthwise layer with random int8 weights and outputs aimed at the int8 range."""
    h, w = hw
    span = [(kk - 1) * dilation + 1 for kk in k]
    oh = (h + 2 * pad - span[0]) // stride + 1
    ow = (w + 2 * pad - span[1]) // stride + 1
    if depthwise:
        cout = cin * ch_mult
        filt = rng.integers(-127, 128, (1, *k, cout))
        depth = k[0] * k[1]
    else:
        filt = rng.integers(-127, 128, (cout, *k, cin // groups))
        depth = k[0] * k[1] * cin // groups
    shift = -int(np.round(np.log2(5500 * np.sqrt(depth) / 64)))  # |acc| ~ 5500 sqrt(depth)
    p = ConvParams(
        stride_h=stride, stride_w=stride, pad_top=pad, pad_left=pad, dilation_h=dilation,
        dilation_w=dilation, input_offset=int(rng.integers(-127, 129)),
        output_offset=int(rng.integers(-128, 128)), act_min=-128, act_max=127,
        ch_mult=ch_mult if depthwise else 1,
        multiplier=rng.integers(2**30, 2**31, cout).astype(np.int32),
        shift=(shift + rng.integers(-1, 2, cout)).astype(np.int32),
        filter=filt.astype(np.int8),
        bias=rng.integers(-(2**14), 2**14, cout).astype(np.int32) if bias else None)
    return Layer(name, "depthwise" if depthwise else "conv2d", p, (h, w, cin), (oh, ow, cout))


def fc_layer(rng: np.random.Generator, name: str, rows: int, k: int, n_out: int,
             filter_offset: int = 0, bias: bool = True) -> Layer:
    shift = -int(np.round(np.log2(5500 * np.sqrt(k) / 64)))
    p = FCParams(
        input_offset=int(rng.integers(-127, 129)), filter_offset=filter_offset,
        output_offset=int(rng.integers(-128, 128)), act_min=-128, act_max=127,
        multiplier=rng.integers(2**30, 2**31, n_out).astype(np.int32),
        shift=(shift + rng.integers(-1, 2, n_out)).astype(np.int32),
        filter=rng.integers(-127, 128, (n_out, k)).astype(np.int8),
        bias=rng.integers(-(2**14), 2**14, n_out).astype(np.int32) if bias else None)
    return Layer(name, "fc", p, (rows, k), (rows, n_out))


# CMSIS-NN instructions per MAC (gcc 12 -O2, emulated core), from issue 3.
CMSIS_NN = {"cortex-m4": {"conv 3x3": 2.14, "1x1 conv": 2.07, "fully connected": 2.07,
                          "depthwise 3x3": 7.96},
            "cortex-m0plus": {"conv 3x3": 7.13, "1x1 conv": 7.55, "fully connected": 6.42,
                              "depthwise 3x3": 37.7}}
# (target, dsp) columns of the table.
RUNS = (("cortex-m4", True), ("cortex-m4", False), ("cortex-m0plus", False))


def bench_layers() -> dict[str, Layer]:
    """The reference configurations; sized so one layer's input + output fit the M0+'s 16 KiB."""
    rng = np.random.default_rng(0)
    return {
        "conv 3x3": conv_layer(rng, "conv3x3 16x16x16->16 pad1", (16, 16), 16, 16, (3, 3), pad=1),
        "1x1 conv": conv_layer(rng, "conv1x1 12x12x32->32", (12, 12), 32, 32, (1, 1)),
        "fully connected": fc_layer(rng, "fc 256->64", 1, 256, 64),
        "depthwise 3x3": conv_layer(rng, "dw3x3 12x12x32 pad1", (12, 12), 32, 0, (3, 3), pad=1,
                                    depthwise=True),
    }


def _pads(layer: Layer, pad_top: int, pad_left: int, out_hw: tuple[int, int]) -> Layer:
    """layer with TensorFlow SAME-style asymmetric padding: top/left given, the output size
    implying the bottom/right."""
    from dataclasses import replace

    p = replace(layer.params, pad_top=pad_top, pad_left=pad_left)
    return Layer(layer.name, layer.kind, p, layer.in_shape, (*out_hw, layer.out_shape[2]))


def first_layers() -> dict[str, Layer]:
    """The MLPerf Tiny first layers (few input channels, issue 11) and strided 1x1 convs, sized
    to fit the M0+'s 16 KiB (vww01's and ic01's at a quarter of their input area; per-MAC
    figures depend on the shape, not the area, apart from the border share)."""
    rng = np.random.default_rng(2)
    return {
        "kws01 L0": _pads(conv_layer(rng, "conv 10x4 s2 49x10x1->25x5x64 (pad 4,1)", (49, 10), 1,
                                     64, (10, 4), stride=2), 4, 1, (25, 5)),
        "ic01 L0": conv_layer(rng, "conv 3x3 16x16x3->16 pad1", (16, 16), 3, 16, (3, 3), pad=1),
        "vww01 L0": _pads(conv_layer(rng, "conv 3x3 s2 48x48x3->24x24x8 (pad 0,0)", (48, 48), 3,
                                     8, (3, 3), stride=2), 0, 0, (24, 24)),
        "1x1 s2": conv_layer(rng, "conv1x1 s2 16x16x32->8x8x64", (16, 16), 32, 64, (1, 1),
                             stride=2),
    }


def measure_first(work: Path) -> list[dict]:
    """Instructions per MAC of first_layers()."""
    rows = []
    for key, layer in first_layers().items():
        folder = kernel_folder([layer], work / re.sub(r"\W", "_", "first " + key))
        row = {"kernel": key, "shape": layer.name, "elements": layer.macs}
        for tgt, dsp in RUNS:
            r = profile.profile(folder, tgt, dsp=dsp)
            row[f"{tgt}{' dsp' if dsp else ' portable'}"] = round(
                r["layers"][0]["instructions"] / layer.macs, 2)
        rows.append(row)
    return rows


def add_layer(name: str, n: int) -> Layer:
    """A residual add with TFLite's int8 parameters (input scales 0.05 and 0.05, output 0.08)."""
    s1, s2, so = 0.05, 0.05, 0.08
    twice_max = 2 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << 20) * so))
    p = {"input1_offset": 3, "input1_multiplier": m1, "input1_shift": sh1, "input2_offset": 3,
         "input2_multiplier": m2, "input2_shift": sh2, "left_shift": 20, "output_offset": -5,
         "output_multiplier": mo, "output_shift": sho, "act_min": -128, "act_max": 127}
    return Layer(name, "add", p, (n,), (n,))


def softmax_layer(name: str, rows: int, size: int) -> Layer:
    """Softmax with beta * input_scale = 0.1 (TFLite's PreprocessSoftmaxScaling)."""
    mult, shift = quantize_multiplier(0.1 * 2**26)
    p = {"input_multiplier": mult, "input_left_shift": shift,
         "diff_min": -((31 << 26) >> shift)}
    return Layer(name, "softmax", p, (rows, size), (rows, size))


def groupnorm_layer(name: str, spatial: int, channels: int, groups: int) -> Layer:
    """GroupNorm with random gamma/beta, input scale 0.05, output scale 0.03."""
    rng = np.random.default_rng(1)
    p = groupnorm_params(0.05, 3, rng.uniform(0.5, 1.5, channels), rng.uniform(-0.3, 0.3, channels),
                         1e-5, groups, spatial, 0.03, -2)
    return Layer(name, "groupnorm", p, (spatial, channels), (spatial, channels))


def spatial_layers() -> dict[str, Layer]:
    """The spatial kernels (no CMSIS-NN reference point): a U-Net style 2x up-convolution, a
    3x3x3 conv over a small volume, a 2x bilinear upsample."""
    rng = np.random.default_rng(1)
    up = conv_layer(rng, "", (8, 8), 16, 16, (3, 3))
    p = ConvParams(**{**up.params.__dict__, "stride_h": 2, "stride_w": 2, "pad_top": 1,
                      "pad_left": 1, "shift": up.params.shift - 1})
    cout = 8
    depth = 27 * 8
    shift = -int(np.round(np.log2(5500 * np.sqrt(depth) / 64)))
    p3 = Conv3DParams(
        stride_d=1, stride_h=1, stride_w=1, pad_front=1, pad_top=1, pad_left=1, dilation_d=1,
        dilation_h=1, dilation_w=1, input_offset=3, output_offset=-2, act_min=-128, act_max=127,
        multiplier=rng.integers(2**30, 2**31, cout).astype(np.int32),
        shift=(shift + rng.integers(-1, 2, cout)).astype(np.int32),
        filter=rng.integers(-127, 128, (cout, 3, 3, 3, 8)).astype(np.int8),
        bias=rng.integers(-(2**14), 2**14, cout).astype(np.int32))
    a = ir.ResizeAttrs("linear", "half_pixel", "floor", (2.0, 2.0), (16, 16))
    return {
        "transpose conv 3x3 s2": Layer("tconv3x3 s2 8x8x16->16x16x16 (pad 1, output_padding 1)",
                                       "transpose_conv", p, (8, 8, 16), (16, 16, 16)),
        "conv3d 3x3x3": Layer("conv3d 3x3x3 6x6x6x8->8 pad 1", "conv3d", p3, (6, 6, 6, 8),
                              (6, 6, 6, 8)),
        "resize bilinear x2": Layer("bilinear 8x8x16 -> 16x16x16", "resize_bilinear",
                                    {"tables": resize_params(a, (8, 8), (16, 16))},
                                    (8, 8, 16), (16, 16, 16)),
    }


def measure_spatial(work: Path) -> list[dict]:
    """Instructions per MAC (per output element for resize) of the spatial kernels."""
    rows = []
    for key, layer in spatial_layers().items():
        folder = kernel_folder([layer], work / re.sub(r"\W", "_", key))
        row = {"kernel": key, "shape": layer.name, "elements": layer.macs}
        for tgt, dsp in RUNS:
            r = profile.profile(folder, tgt, dsp=dsp)
            row[f"{tgt}{' dsp' if dsp else ' portable'}"] = round(
                r["layers"][0]["instructions"] / layer.macs, 2)
        rows.append(row)
    return rows


def elementwise_layers() -> dict[str, Layer]:
    return {"add": add_layer("add 1024 (no broadcast)", 1024),
            "softmax": softmax_layer("softmax 16 rows x 12", 16, 12),
            "groupnorm": groupnorm_layer("groupnorm 8x8x16, 4 groups", 64, 16, 4)}


def measure_elementwise(work: Path) -> list[dict]:
    """Instructions per element of add, softmax and groupnorm."""
    rows = []
    for key, layer in elementwise_layers().items():
        folder = kernel_folder([layer], work / f"ew_{key}")
        row = {"kernel": key, "shape": layer.name, "elements": layer.macs}
        for tgt, dsp in RUNS:
            r = profile.profile(folder, tgt, dsp=dsp)
            row[f"{tgt}{' dsp' if dsp else ' portable'}"] = round(
                r["layers"][0]["instructions"] / layer.macs, 2)
        rows.append(row)
    return rows


def markdown_elementwise(rows: list[dict]) -> str:
    cols = [f"{tgt}{' dsp' if dsp else ' portable'}" for tgt, dsp in RUNS]
    lines = ["| kernel | shape | elements | " + " | ".join(cols) + " |",
             "|" + "---|" * (3 + len(cols))]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['shape']} | {r['elements']} | "
                     + " | ".join(f"{r[c]:.1f}" for c in cols) + " |")
    return "\n".join(lines)


def measure(work: Path) -> list[dict]:
    rows = []
    for key, layer in bench_layers().items():
        folder = kernel_folder([layer], work / re.sub(r"\W", "_", key))
        row = {"kernel": key, "shape": layer.name, "macs": layer.macs}
        for tgt, dsp in RUNS:
            r = profile.profile(folder, tgt, dsp=dsp)
            per_mac = r["layers"][0]["instructions"] / layer.macs
            col = f"{tgt}{' dsp' if dsp else ' portable'}"
            row[col] = round(per_mac, 2)
            row[col + " vs cmsis-nn"] = round(per_mac / CMSIS_NN[tgt][key], 2)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    head = ["kernel", "shape", "MACs"]
    for tgt, dsp in RUNS:
        head.append(f"{tgt} {'DSP' if dsp else 'portable'} (ratio vs CMSIS-NN {tgt})")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["kernel"], r["shape"], str(r["macs"])]
        for tgt, dsp in RUNS:
            col = f"{tgt}{' dsp' if dsp else ' portable'}"
            cells.append(f"{r[col]:.2f} ({r[col + ' vs cmsis-nn']:.2f}x of "
                         f"{CMSIS_NN[tgt][r['kernel']]})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mq_bench_kernels"))
    try:
        rows = measure(work)
        ew = measure_elementwise(work)
        sp = measure_spatial(work)
        fl = measure_first(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("Instructions per MAC on the emulated core (QEMU TCG plugin, gcc 12 -O2); ratio < 1 "
          "means fewer instructions than CMSIS-NN.\n")
    print(markdown(rows))
    print("\nInstructions per element:\n")
    print(markdown_elementwise(ew))
    print("\nSpatial kernels, instructions per MAC (per output element for resize):\n")
    print(markdown_elementwise(sp).replace("| elements |", "| MACs |"))
    print("\nFew-input-channel first layers and strided 1x1, instructions per MAC:\n")
    print(markdown_elementwise(fl).replace("| elements |", "| MACs |"))
    if args.json:
        args.json.write_text(json.dumps({"per_mac": rows, "per_element": ew, "spatial": sp,
                                         "first_layers": fl},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
