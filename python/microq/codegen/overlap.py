"""Which kernel outputs may overlap which of their inputs, and by how much (issue 12).

The arena planner (plan.py) consults `output_lag` for every node whose input dies at that node.
It returns D, the largest allowed `output_offset - input_offset` in bytes, when the C kernel as
written is correct with its output placed at any arena offset <= input_offset + D (any overlap
that places the output further down in memory than that, including no overlap on the low side,
is fine too; an output wholly above the input's end never overlaps it). None: the output must not
overlap that input at all.

Facts, each checked against c_runtime/src as written (no `restrict` anywhere in the runtime):

- add, sub, mul, maximum, minimum (mq_elementwise.c broadcast_walk/run_row), input k whose
  shape equals the output's (no broadcasting on that input): output element i is written in the
  same loop iteration that reads input element i, after the read, and the walk is in increasing
  row-major order for both (contiguous path: one run over all elements; broadcast path: rows in
  order, and an unbroadcast input's odometer offset equals the output's). So out[i] at
  out_start + i is never a byte still to be read (in_start + j, j > i) when out_start <= in_start:
  D = 0, "in place allowed". A broadcast input is re-read and gets no overlap.
- lut (mq_lut_s8), requantize (mq_requantize_s8): one loop, output[i] written after input[i] is
  read: D = 0 on the single input (the lookup table is const).
- prelu: same walk as add; D = 0 on input 0 (the data) when unbroadcast; alpha gets none.

- conv2d on its 1x1 fast path (mq_conv.c: 1x1, stride 1, no padding, one group, same H x W),
  input 0: mq_rows_s8 loops over filter blocks OUTERMOST (portable 4-filter blocks, DSP filter
  pairs in mq_pair_rows) and re-reads every row of its call for each block, so no output byte of
  a call may land on that call's input. mq_conv2d_s8 calls it on chunks of MQ_ROWS_CHUNK rows in
  increasing order, so the output may overlap the already consumed chunks: D =
  rows_chunk_lag(rows, cin, cout) (negative: the output starts below the input). Conservative by
  less than one output row (the last filter block's writes follow its reads).

- depthwise_conv2d, input 0: mq_depthwise_conv2d_s8 runs chunks of MQ_DW_ROWS output rows in
  order (channel blocks of 4 outermost inside a chunk, re-reading the chunk's input window for
  each block; the DSP 2-pixel core stays inside a chunk's row): D = dw_rows_lag, the output ends
  each chunk below the first input row that chunk reads (about (DW_ROWS + pad) rows of lag).

Not enabled (the C as written forbids it):
- fully_connected (one mq_rows_s8 call over all rows, usually one row): no useful overlap.
- kxk conv and pools: a window of rows around each output row, channel/filter blocks
  outermost; they would need the same row chunking as depthwise (not done). This includes the
  few-input-channel path (mq_conv_few_channels: groups of 4 output pixels, each reading its
  whole receptive field) and the strided 1x1 conv (mq_rows_s8 once per output row, reading the
  input in place, filter blocks outermost): no overlap.
"""

from __future__ import annotations

from ..qir import QGraph, QNode

# kernel -> the input indices that may be overlapped in place (D = 0) when unbroadcast
IN_PLACE_INPUTS: dict[str, tuple[int, ...]] = {
    "add": (0, 1),
    "sub": (0, 1),
    "mul": (0, 1),
    "maximum": (0, 1),
    "minimum": (0, 1),
    "prelu": (0,),
    "lut": (0,),
    "requantize": (0,),
}


# Rows (NHWC pixels) per chunk of mq_conv2d_s8's 1x1 fast path (MQ_ROWS_CHUNK in mq_conv.c).
ROWS_CHUNK = 256


def rows_chunk_lag(rows: int, cin: int, cout: int, chunk: int = ROWS_CHUNK) -> int:
    """D for a kernel that, chunk by chunk of `chunk` rows in increasing order, reads any of the
    chunk's input rows [r0, r0 + n) and writes any of its output rows [r0, r0 + n) (in any order
    inside the chunk), and never touches earlier rows again: every output byte of a chunk must
    lie below the chunk's first unread input byte, out + (r0 + n) * cout <= in + r0 * cin."""
    lag = None
    for r0 in range(0, rows, chunk):
        n = min(chunk, rows - r0)
        d = r0 * cin - (r0 + n) * cout
        lag = d if lag is None else min(lag, d)
    return lag if lag is not None else 0


# Output rows per chunk of mq_depthwise_conv2d_s8 (MQ_DW_ROWS in mq_conv.c).
DW_ROWS = 2


def dw_rows_lag(g: QGraph, node: QNode) -> int | None:
    """D for mq_depthwise_conv2d_s8: chunk by chunk of DW_ROWS output rows (per batch item, in
    increasing order) it reads input rows from max(0, oy0 * stride_h - pad_top) on and writes
    output rows [oy0, oy1); so every output byte of a chunk must lie below the first input byte
    that chunk (or any later one) reads."""
    p = node.params
    xs, ys = g.tensors[node.inputs[0]].shape, g.tensors[node.outputs[0]].shape
    if len(xs) != 4 or len(ys) != 4:
        return None
    n, in_h, in_w, in_c = (int(v) for v in xs)
    _, out_h, out_w, out_c = (int(v) for v in ys)
    lag = None
    for b in range(n):
        for oy0 in range(0, out_h, DW_ROWS):
            oy1 = min(oy0 + DW_ROWS, out_h)
            first_read = (b * in_h + max(0, oy0 * p.stride_h - p.pad_top)) * in_w * in_c
            d = first_read - (b * out_h + oy1) * out_w * out_c
            lag = d if lag is None else min(lag, d)
    return lag


def _conv1x1_rows(g: QGraph, node: QNode) -> tuple[int, int, int] | None:
    """(rows, cin, cout) when mq_conv2d_s8 takes its 1x1 fast path for `node` (the condition in
    mq_conv.c: 1x1 filter, stride 1, no padding, one group, output size == input size)."""
    p = node.params
    xs, ys = g.tensors[node.inputs[0]].shape, g.tensors[node.outputs[0]].shape
    filt = getattr(p, "filter", None)
    if filt is None or len(xs) != 4 or len(ys) != 4 or filt.ndim != 4:
        return None
    out_c, kh, kw, f_c = filt.shape
    if (kh, kw, p.stride_h, p.stride_w, p.pad_top, p.pad_left) != (1, 1, 1, 1, 0, 0):
        return None
    if f_c != xs[3] or tuple(xs[:3]) != tuple(ys[:3]) or ys[3] != out_c:
        return None
    return int(xs[0] * xs[1] * xs[2]), int(xs[3]), int(out_c)


def output_lag(g: QGraph, node: QNode, input_index: int) -> int | None:
    """The largest allowed output_offset - input_offset (bytes) for node's output 0 over its
    input `input_index`, or None when they must not overlap."""
    if node.kernel == "depthwise_conv2d" and input_index == 0 and len(node.outputs) == 1:
        return dw_rows_lag(g, node)
    if node.kernel == "conv2d" and input_index == 0 and len(node.outputs) == 1:
        fast = _conv1x1_rows(g, node)
        return rows_chunk_lag(*fast) if fast else None
    allowed = IN_PLACE_INPUTS.get(node.kernel)
    if allowed is None or input_index not in allowed or len(node.outputs) != 1:
        return None
    x, y = node.inputs[input_index], node.outputs[0]
    tx, ty = g.tensors[x], g.tensors[y]
    if tuple(tx.shape) != tuple(ty.shape):  # broadcast (or a size change): re-read, no overlap
        return None
    return 0


def describe(kernel: str) -> str:
    """One line of the stated access order and overlap rule of `kernel` (for docs and tests)."""
    if kernel in IN_PLACE_INPUTS:
        ins = ", ".join(str(i) for i in IN_PLACE_INPUTS[kernel])
        return (
            f"{kernel}: element i written after input element i is read, increasing order; "
            f"in place allowed over input(s) {ins} when unbroadcast (output_offset <= input_offset)"
        )
    return f"{kernel}: no overlap between output and inputs"
