"""What the ONNX importer supports and its limits: the data behind `microq ops` and the README's
"Supported ONNX ops" table (`microq ops --markdown` prints that table)."""

from __future__ import annotations

# (ONNX ops, runs as (C kernel), limits); one README row each, in README order
ROWS: list[tuple[tuple[str, ...], str, str]] = [
    (("Conv",), "`mq_conv2d_s8`, `mq_depthwise_conv2d_s8`, `mq_conv3d_s8`",
     "1-D, 2-D and 3-D (NDHWC; a direct loop, slower per MAC than the 2-D kernels); pads incl. "
     "asymmetric, `auto_pad`, strides, dilations, groups, depthwise with channel multiplier; "
     "constant weights (per-channel int8)"),
    (("Gemm", "MatMul"), "`mq_fully_connected_s8`",
     "constant weight (+ Add bias), rows = product of leading dims; Gemm: transA 0 or 1, C of "
     "[N], a scalar, or [M, N] (an Add after)"),
    (("BatchNormalization",), "folded into the conv / linear before it",
     "inference mode; standalone: a per-channel affine (depthwise 1x1)"),
    (("Relu", "Clip"), "the producing layer's output clamp",
     "Clip with constant min/max; standalone (or after an op without a clamp): lookup table"),
    (("LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Softplus", "Gelu",
      "Mish"),
     "`mq_lut_s8`",
     "256-entry int8 table computed offline; also x*Sigmoid(x) (SiLU), x*Tanh(Softplus(x)) "
     "(Mish), Gelu's Erf and Tanh forms and ONNX's own function bodies of these ops"),
    (("Softmax",), "`mq_softmax_s8`",
     "TFLite Micro's integer softmax; output scale 1/256; any axis but the batch"),
    (("MaxPool", "GlobalMaxPool"), "`mq_max_pool_s8`",
     "1-D and 2-D; shares its input's quantization; no Indices output"),
    (("AveragePool", "GlobalAveragePool", "ReduceMean"), "`mq_avg_pool_s8`",
     "1-D and 2-D, `count_include_pad` 0 and 1, `ceil_mode`; ReduceMean over the spatial axes or "
     "one other axis but the batch"),
    (("Add", "Sub", "Mul", "Div"), "`mq_add_s8`, `mq_sub_s8`, `mq_mul_s8`",
     "two activations or with a constant, numpy broadcasting; Div by a constant; fused Relu/Clip"),
    (("Concat",), "`mq_concat_s8` (+ `mq_requantize_s8` where input scales differ)",
     "any axis but the batch"),
    (("Expand",), "`mq_concat_s8` (copies of one tensor, no requantize)",
     "an activation to a constant shape, numpy broadcasting (also a lower-rank shape): new "
     "leading axes are free, each repeated size-1 axis a Concat of copies (ONNX's Attention "
     "function body and dynamo's GQA head repeat); not along the batch axis; a constant is "
     "folded"),
    (("Reshape", "Flatten", "Squeeze", "Unsqueeze"),
     "nothing: the output aliases its input's memory",
     "the batch axis is tracked through them; a transpose is inserted only when NCHW vs NHWC "
     "order really differs"),
    (("Transpose",), "`mq_transpose_s8`", "rank <= 6; moves the batch axis like any other"),
    (("Pad",), "`mq_pad_s8`", "constant mode, non-negative pads; rank <= 4"),
    (("MatMul",), "`mq_batch_matmul_s8`",
     "between two activations (Q·Kᵀ, A·V; a constant scale folds in): batched over heads, "
     "broadcasting; Kᵀ read without a transpose"),
    (("Attention",), "`mq_batch_matmul_s8`, `mq_softmax_masked_s8` (`mq_softmax_s8` unmasked)",
     "opset 23/24 (torch's dynamo exporter at opset 23 and 24 emits it for F.scaled_dot_product_"
     "attention and nn.MultiheadAttention); 3-D (q_num_heads / kv_num_heads) and 4-D; GQA / MQA "
     "(fewer kv heads: Q viewed per kv head, no copy); `scale`; `is_causal`; a constant "
     "`attn_mask`, bool or float of 0 / -inf entries; lowered to Q·Kᵀ, masked softmax, ·V. Not: "
     "past_key / past_value, nonpad_kv_seqlen, softcap, a non-constant or bias-valued mask, the "
     "present_key / present_value / qk_matmul_output outputs"),
    (("MaskedSoftmax",), "`mq_softmax_masked_s8`",
     "not an ONNX op: the importer's form of a Softmax after a constant attention mask (Add of a "
     "0 / -inf constant, Where(mask, scores, -inf)): SDPA is_causal / attn_mask, "
     "nn.MultiheadAttention and TransformerEncoderLayer masks, both exporters; a uint8 keep byte "
     "per (query, key), masked keys get probability exactly 0, a fully masked row is 0; a bias "
     "added together with a mask (ALiBi + causal) is refused"),
    (("LayerNormalization",), "`mq_layernorm_s8`",
     "opset 17, its decomposed forms and ONNX's function body; constant scale/bias; no "
     "Mean/InvStdDev outputs; axes not holding the batch"),
    (("Split", "Slice", "Gather"), "`mq_slice_s8`",
     "any axis but the batch (heads, q/k/v after a permute); constant starts/ends/steps > 0; "
     "Gather of constant consecutive indices"),
    (("InstanceNormalization", "GroupNormalization"), "`mq_groupnorm_s8`",
     "1-D and 2-D; GroupNormalization opset 18 (per-group scale) and 21 (per-channel); torch's "
     "GroupNorm as Reshape -> InstanceNormalization -> Reshape -> Mul -> Add; NHWC, per-channel "
     "gamma/beta; integer mean, variance and inverse square root per group; at most 2^18 values "
     "per group; a following Relu/Clip fuses"),
    (("PRelu",), "`mq_prelu_s8`",
     "per-channel or one slope (any slope that broadcasts), also as ONNX's function body "
     "(Where/Less); TFLite PRELU: int8 slope, two multipliers (positive and negative side)"),
    (("Abs",), "`mq_abs_s8`",
     "the absolute value of (x - zero point), requantized to the output's scale (calibrated, "
     ">= 0)"),
    (("Max", "Min"), "`mq_maximum_s8`, `mq_minimum_s8`",
     "two activations with broadcasting, or with a constant; more inputs as a chain; both inputs "
     "rescaled to one scale as in ADD, then the larger / smaller requantized"),
    (("ReduceMax", "ReduceMin"), "`mq_reduce_max_s8`, `mq_reduce_min_s8`",
     "any axes but the batch, keepdims 0/1, axes as attribute or input; shares its input's "
     "quantization"),
    (("ArgMax",), "`mq_argmax_s8`",
     "any axis but the batch, keepdims, select_last_index; the index is an int8 output with "
     "scale 1 and zero point 0, so the axis may have at most 128 entries"),
    (("Resize",), "`mq_resize_nearest_s8`, `mq_resize_bilinear_s8`",
     "nearest and linear, 1-D and 2-D; scales or sizes (opset 18 `axes`); coordinate modes "
     "half_pixel, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn, "
     "half_pixel_symmetric; every nearest_mode; taps computed offline as onnxruntime does, Q10 "
     "bilinear weights; shares its input's quantization; not cubic, tf_crop_and_resize, antialias"),
    (("ConvTranspose",), "`mq_transpose_conv2d_s8`",
     "1-D and 2-D; pads, `output_padding`, `output_shape`, `auto_pad` SAME_UPPER/LOWER, strides, "
     "dilations, groups incl. depthwise; per-channel int8 weights (as TFLite TRANSPOSE_CONV); "
     "fused Relu/Clip"),
    (("LSTM", "GRU"), "`mq_lstm_s8`, `mq_gru_s8`",
     "forward, reverse and bidirectional, `layout` 0/1, one or stacked layers, Y and Y_h "
     "outputs, zero or absent initial states; GRU linear_before_reset=1 (torch) and 0 (ONNX "
     "default); int8 weights, int16 gates (Q3.12) and cell state, int16 sigmoid/tanh tables; "
     "not clip, peepholes or Y_c outputs"),
    (("Identity", "Dropout", "Cast"), "removed",
     "Dropout in inference (no mask output); Cast float to float"),
]


def supported_ops() -> list[dict]:
    """One entry per ONNX op the importer converts: {op, runs_as, limits}; an op registered
    without a row here says so."""
    from microq.onnx_import.convert import CONVERTERS

    out, seen = [], set()
    for ops, runs, limits in ROWS:
        for op in ops:
            if op in CONVERTERS and (op, runs) not in seen:
                seen.add((op, runs))
                out.append({"op": op, "runs_as": runs, "limits": limits})
    documented = {op for ops, _, _ in ROWS for op in ops}
    for op in sorted(set(CONVERTERS) - documented):
        out.append({"op": op, "runs_as": "(see `microq inspect`)",
                    "limits": "supported; limits not documented in ops_table.ROWS yet"})
    return out


def markdown() -> str:
    """The README table."""
    from microq.onnx_import.convert import CONVERTERS

    lines = ["| ONNX op | runs as (C kernel) | notes |", "|---|---|---|"]
    for ops, runs, limits in ROWS:
        present = [op for op in ops if op in CONVERTERS]
        if present:
            lines.append(f"| {', '.join(present)} | {runs} | {limits} |")
    documented = {op for ops, _, _ in ROWS for op in ops}
    for op in sorted(set(CONVERTERS) - documented):
        lines.append(f"| {op} | (see `microq inspect`) | limits not documented yet |")
    return "\n".join(lines)


def text() -> str:
    rows = supported_ops()
    width = max(len(r["op"]) for r in rows)
    return "\n".join(f"{r['op']:<{width}}  {r['runs_as']}: {r['limits']}" for r in rows)
