"""Which kernel outputs may overlap which of their inputs, and where (issue 12).

The arena planner (plan.py) consults `output_room` for every node whose input dies at that node.
It returns a Room over rel = output_offset - input_offset (bytes): any rel <= below, any rel >=
above, or one of a few single points, at which one of the node's C calls (`variants`) is correct
with output and input sharing bytes; codegen then emits the call that allows the placed rel
(`pick_variant`). `output_lag` is the `below` edge alone.

Facts, each checked against c_runtime/src as written (no `restrict` anywhere in the runtime):

- add, sub, mul, maximum, minimum (mq_elementwise.c broadcast_walk/run_row), input k whose
  shape equals the output's (no broadcasting on that input): output element i is written in the
  same loop iteration that reads input element i, after the read, and the walk is in increasing
  row-major order for both (contiguous path: one run over all elements; broadcast path: rows in
  order, and an unbroadcast input's odometer offset equals the output's). So out[i] at
  out_start + i is never a byte still to be read (in_start + j, j > i) when out_start <= in_start:
  below = 0, "in place allowed". A broadcast input is re-read and gets no overlap.
- lut (mq_lut_s8), requantize (mq_requantize_s8): one loop, output[i] written after input[i] is
  read: below = 0 on the single input (the lookup table is const).
- prelu: same walk as add; below = 0 on input 0 (the data) when unbroadcast; alpha gets none.

- conv2d on its 1x1 fast path (mq_conv.c: 1x1, stride 1, no padding, one group, same H x W),
  input 0: the engine (mq_rows_s8) is taken to touch a call's rows in any order (it loops over
  filter blocks outermost and re-reads every row of the call for each block), so no output byte
  of a call may land on that call's unread input. mq_conv2d_s8 calls it on chunks of
  MQ_ROWS_CHUNK rows in increasing order: below = rows_chunk_lag(rows, cin, cout).
  mq_conv2d_1x1_ordered_s8 does the same with chunks of a given size, in increasing order
  (rows_chunk_lag) or from the last row down (above = rows_chunk_above); the planner places it
  for chunks of PW_MIN_CHUNK, codegen takes the largest chunk the placement allows. Conservative
  by less than one output row (the last filter block's writes follow its reads).

- depthwise_conv2d, input 0: mq_depthwise_conv2d_s8 (chunks of DW_ROWS output rows) and
  mq_depthwise_conv2d_ordered_s8 (chunks of any size, top rows first or bottom rows first with
  pixels from the right): inside a chunk, channel blocks of 4 outermost, a pixel's (or a DSP
  two-pixel pass's) taps read before its outputs are written, then the remaining channels pixel
  by pixel. depthwise_events lists every read and write of that order exactly (the DSP pairing
  condition replicated); room_from_events turns them into the exact interval edges and
  safe_points adds the pixel-aligned rels in between where each channel lands on a consumed
  byte of its own channel (e.g. one row and one pixel above or below for 3x3 pad 1). The room
  is valid for both builds (portable and DSP).

- conv2d on the general path (mq_conv_general: kxk, one group, more than 4 input channels):
  pixels in order (DSP: two with equal taps share a pass), filter blocks inside a pixel, each
  reading all taps: conv_events / room_from_events, exact. Not declared for 1x1 strided convs
  and first layers of <= 4 channels, whose paths may change with the GEMM engine work.

Not enabled (the C as written forbids it or its order is not modelled):
- fully_connected (one mq_rows_s8 call over all rows, usually one row): no useful overlap.
- pools, grouped convs, transpose conv, conv3d.
- the few-input-channel conv path (mq_conv_few_channels: groups of 4 output pixels, each
  reading its whole receptive field) and the strided 1x1 conv (mq_rows_s8 once per output row,
  reading the input in place, filter blocks outermost).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ..ops import KERNELS
from ..qir import QGraph, QNode

# kernel -> the input indices that may be overlapped in place (D = 0) when unbroadcast
# (KernelDef.in_place in microq.ops)
IN_PLACE_INPUTS: dict[str, tuple[int, ...]] = {k: d.in_place for k, d in KERNELS.items()
                                                if d.in_place}


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


# The fewest pixels per engine call the planner places a 1x1 variant for: on DSP cores each
# call widens the filters again, so small steps cost instructions for a few bytes of arena.
# Measured (M4 DSP instructions, arena), minimum chunk 1 / 8 / 32: kws01 9.91 M 8,384 B /
# 9.63 M 8,512 B / 8.96 M 10,048 B; vww01 24.89 M 36,872 B / 22.79 M 36,928 B / 21.77 M
# 37,120 B; sww01 2.68 M 3,624 B / 2.27 M 4,096 B / 2.09 M 6,144 B (the layer-by-layer kernels:
# kws01 8.72 M, vww01 21.19 M, sww01 2.10 M). Codegen takes the largest chunk the placement
# allows.
PW_MIN_CHUNK = 8

# Output rows per chunk of mq_depthwise_conv2d_s8 (MQ_DW_ROWS in mq_conv.c).
DW_ROWS = 2
# Rows per step codegen tries for mq_depthwise_conv2d_ordered_s8 before 1 (the planner places
# by the room of 1 row; a larger step is taken when the placement also suits it)
DW_CHUNKS = (4, 2)


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


def _tap_range(origin: int, dilation: int, size: int, k: int) -> tuple[int, int]:
    """mq_tap_range (mq_conv.c): taps [start, end) with 0 <= origin + tap * dilation < size."""
    start, end = 0, k
    if origin < 0:
        start = (-origin + dilation - 1) // dilation
    if origin + (k - 1) * dilation >= size:
        end = (size - origin + dilation - 1) // dilation if size - origin > 0 else 0
    return start, max(end, start)


def room_from_events(
    in_bytes: np.ndarray, read_t: np.ndarray, out_bytes: np.ndarray, write_t: np.ndarray
) -> tuple[int | None, int | None]:
    """(D, L) of a kernel whose reads of input byte in_bytes[k] happen at time read_t[k] and whose
    write of output byte out_bytes[k] happens at write_t[k] (a read and a write at one time: the
    read first). The output placed at rel = output_offset - input_offset puts output byte o on
    input byte o + rel; that is harmful exactly when that input byte is read after o is written.
    So the harmful rels are F = {i - o : last_read(i) > write(o)}, every rel <= D = min(F) - 1
    and every rel >= L = max(F) + 1 is safe. None: no overlap is ever harmful on that side
    (F empty: both None)."""
    if in_bytes.size == 0 or out_bytes.size == 0:
        return None, None
    n_in = int(in_bytes.max()) + 1
    last = np.full(n_in, -1, np.int64)
    np.maximum.at(last, in_bytes, read_t)
    order = np.argsort(last, kind="stable")
    lr = last[order]
    idx = order.astype(np.int64)
    suf_min = np.minimum.accumulate(idx[::-1])[::-1]
    suf_max = np.maximum.accumulate(idx[::-1])[::-1]
    k = np.searchsorted(lr, write_t, side="right")  # first input byte read after the write
    hit = k < n_in
    if not hit.any():
        return None, None
    o, k = out_bytes[hit].astype(np.int64), k[hit]
    return int((suf_min[k] - o).min()) - 1, int((suf_max[k] - o).max()) + 1


MAX_POINTS = 8  # pixel-aligned points returned at the inner end of each safe run


def safe_points(
    builds: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    below: int | None, above: int | None, step: int,
) -> tuple[int, ...]:
    """Rels strictly between `below` and `above`, multiples of `step` (a pixel: a kernel going
    channel block by channel block may overwrite, channel for channel, a pixel it has just
    finished with), at which no output byte lands on an input byte read after it is written, in
    every build's events (input byte, read time, output byte, write time). From each edge inward
    the safe rels usually form one run (the output may move towards the input until its pixels
    reach ones still to be read): a binary search finds where the run ends and the last
    MAX_POINTS rels of it are each checked; only checked rels are returned, so a run with gaps
    costs points, never safety."""
    if below is None or above is None or step <= 0:
        return ()
    tables = []
    for in_bytes, read_t, out_bytes, write_t in builds:
        last = np.full(int(in_bytes.max()) + 1, -1, np.int64)
        np.maximum.at(last, in_bytes, read_t)
        w = np.full(int(out_bytes.max()) + 1, -1, np.int64)
        w[out_bytes] = write_t
        tables.append((last, w, np.arange(w.size)))

    def safe(rel: int) -> bool:
        for last, w, o in tables:
            on = (o + rel >= 0) & (o + rel < last.size)
            if (last[o[on] + rel] > w[on]).any():
                return False
        return True

    rels = range((below // step + 1) * step, above, step)
    points: set[int] = set()
    for side in (rels, rels[::-1]):  # from the lower edge up, from the upper edge down
        lo, hi = 0, len(side)  # side[:lo] taken safe, side[hi:] not
        while lo < hi:
            mid = (lo + hi) // 2
            if safe(side[mid]):
                lo = mid + 1
            else:
                hi = mid
        points.update(r for r in side[max(0, lo - MAX_POINTS) : lo] if safe(r))
    return tuple(sorted(points))


def depthwise_events(
    p, in_shape, out_shape, k_hw: tuple[int, int], reverse: bool, chunk: int, dsp: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The access order of mq_depthwise_conv2d_ordered_s8 (and of mq_depthwise_conv2d_s8, which
    is its forward order with chunk = DW_ROWS) as (input byte, read time, output byte, write
    time) arrays; `dsp`: with the DSP core's two-pixel passes (mq_dw_3col_2px), replicated from
    the C condition. Time is the rank of the event in the kernel's loops."""
    n, in_h, in_w, in_c = (int(v) for v in in_shape)
    _, out_h, out_w, out_c = (int(v) for v in out_shape)
    k_h, k_w = k_hw
    mult = int(p.ch_mult)
    c4 = in_c & ~3 if mult == 1 else 0
    nblk = c4 // 4
    rows_of = [min(chunk, out_h - d) for d in range(0, out_h, chunk)]
    # per output row: (step rank, rank of the row inside its step)
    step_of, rank_of = np.zeros(out_h, np.int64), np.zeros(out_h, np.int64)
    done = 0
    for s_i, rows in enumerate(rows_of):
        oy0 = out_h - done - rows if reverse else done
        for i in range(rows):
            oy = oy0 + rows - 1 - i if reverse else oy0 + i
            step_of[oy], rank_of[oy] = s_i, i
        done += rows
    # per output pixel (oy, ox): its unit rank in the row (a two-pixel pass shares one unit)
    unit = np.zeros((out_h, out_w), np.int64)
    for oy in range(out_h):
        y0 = oy * p.stride_h - p.pad_top
        ky0, ky1 = _tap_range(y0, p.dilation_h, in_h, k_h)
        j = 0
        while j < out_w:
            ox = out_w - 1 - j if reverse else j
            first = ox - 1 if reverse else ox
            fx0 = first * p.stride_w - p.pad_left
            if (dsp and k_w == 3 and p.stride_w == 1 and p.dilation_w == 1 and first >= 0
                    and first + 1 < out_w and fx0 >= 0 and fx0 + 3 < in_w and ky1 > ky0):
                unit[oy, first] = unit[oy, first + 1] = j
                j += 2
                continue
            unit[oy, ox] = j
            j += 1
    oc = np.arange(out_c)
    blk = np.where(oc < c4, oc // 4, nblk)
    sub = np.where(oc < c4, 0, oc - c4)
    oy, ox = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    # time of (b, oy, ox, oc): lexicographic (batch, step, block, row rank, unit, channel)
    t = ((step_of[oy] * (nblk + 1))[..., None] + blk) * chunk + rank_of[oy][..., None]
    # the remaining channels go pixel by pixel (no two-pixel pass)
    plain = np.broadcast_to(out_w - 1 - np.arange(out_w) if reverse else np.arange(out_w),
                            (out_h, out_w))
    u = np.where(oc < c4, unit[..., None], plain[..., None])
    t = (t * out_w + u) * (out_c + 1) + sub
    t = t[None] + (np.arange(n) * len(rows_of) * (nblk + 1) * chunk * out_w * (out_c + 1))[
        :, None, None, None]
    out_b = np.arange(n * out_h * out_w * out_c).reshape(n, out_h, out_w, out_c)
    ins, tims = [], []
    for ky in range(k_h):
        for kx in range(k_w):
            iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h
            ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w
            ok = (iy >= 0) & (iy < in_h) & (ix >= 0) & (ix < in_w)
            pix = (np.clip(iy, 0, in_h - 1) * in_w + np.clip(ix, 0, in_w - 1))[ok]
            for b in range(n):
                ins.append(((b * in_h * in_w + pix) * in_c)[:, None] + oc // mult)
                tims.append(t[b][ok])
    return (np.concatenate([a.ravel() for a in ins]), np.concatenate([a.ravel() for a in tims]),
            out_b.ravel(), t.ravel())


def _depthwise_room(g: QGraph, node: QNode, reverse: bool, chunk: int):
    """(D, L, safe points) of the depthwise kernel in that order, valid for both the DSP and
    the portable build (multiplier 1: the pixel-aligned points between D and L)."""
    p = node.params
    xs = tuple(int(v) for v in g.tensors[node.inputs[0]].shape)
    ys = tuple(int(v) for v in g.tensors[node.outputs[0]].shape)
    k_hw = (int(p.filter.shape[1]), int(p.filter.shape[2]))
    geo = (p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.dilation_h, p.dilation_w, p.ch_mult)
    return _depthwise_room_cached(geo, xs, ys, k_hw, reverse, chunk)


def depthwise_room(p, xs, ys, k_hw, reverse: bool, chunk: int, builds=(False, True)):
    """(D, L, safe points) of the depthwise order on input/output shapes xs/ys, valid for every
    build in `builds` (False: portable, True: DSP)."""
    geo = (p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.dilation_h, p.dilation_w, p.ch_mult)
    return _depthwise_room_cached(geo, tuple(xs), tuple(ys), tuple(k_hw), reverse, chunk,
                                  tuple(builds))


@functools.lru_cache(maxsize=256)
def _depthwise_room_cached(geo, xs, ys, k_hw, reverse: bool, chunk: int, builds=(False, True)):
    names = ("stride_h", "stride_w", "pad_top", "pad_left", "dilation_h", "dilation_w", "ch_mult")
    p = SimpleNamespace(**dict(zip(names, geo)))
    events = [depthwise_events(p, xs, ys, k_hw, reverse, chunk, dsp) for dsp in builds]
    rooms = [room_from_events(*ev) for ev in events]
    d = [r[0] for r in rooms]
    lo = [r[1] for r in rooms]
    below, above = (None if None in d else min(d)), (None if None in lo else max(lo))
    step = int(ys[3]) if int(xs[3]) == int(ys[3]) else 0
    return below, above, safe_points(events, below, above, step)


def conv_events(p, in_shape, out_shape, k_hw: tuple[int, int], dsp: bool):
    """The access order of mq_conv2d_s8's general path (mq_conv_general, one group) as
    (input byte, read time, output byte, write time) arrays: pixels in increasing order (on DSP
    cores two neighbouring pixels with the same valid taps share one pass), inside a pixel (or
    pair) filter blocks in order (portable: 4 filters, DSP: 2; fewer at the end), each block
    reading every tap of the pixel(s) and then writing its outputs."""
    n, in_h, in_w, in_c = (int(v) for v in in_shape)
    _, out_h, out_w, out_c = (int(v) for v in out_shape)
    k_h, k_w = k_hw
    blocks, oc = [], 0
    while oc < out_c:
        f = 4 if not dsp and oc + 4 <= out_c else (2 if oc + 1 < out_c else 1)
        blocks.append(f)
        oc += f
    nblk = len(blocks)
    blk_of = np.repeat(np.arange(nblk), blocks)
    ins, rts, outs, wts = [], [], [], []
    unit_t = 0
    for b in range(n):
        for oy in range(out_h):
            y0 = oy * p.stride_h - p.pad_top
            ky0, ky1 = _tap_range(y0, p.dilation_h, in_h, k_h)
            ox = 0
            while ox < out_w:
                x0 = ox * p.stride_w - p.pad_left
                kx0, kx1 = _tap_range(x0, p.dilation_w, in_w, k_w)
                pix = 1
                if dsp and ox + 1 < out_w and _tap_range(
                        x0 + p.stride_w, p.dilation_w, in_w, k_w) == (kx0, kx1):
                    pix = 2
                for i in range(pix):
                    xi = x0 + i * p.stride_w
                    iy = y0 + np.arange(ky0, ky1) * p.dilation_h
                    ix = xi + np.arange(kx0, kx1) * p.dilation_w
                    taps = ((b * in_h + iy[:, None]) * in_w + ix[None, :]).ravel()
                    ins.append((taps[:, None] * in_c + np.arange(in_c)).ravel())
                    rts.append(np.full(ins[-1].size, unit_t + nblk - 1))
                    q = (b * out_h + oy) * out_w + ox + i
                    outs.append(q * out_c + np.arange(out_c))
                    wts.append(unit_t + blk_of)
                unit_t += nblk
                ox += pix
    return (np.concatenate(ins), np.concatenate(rts), np.concatenate(outs),
            np.concatenate(wts))


@functools.lru_cache(maxsize=256)
def _conv_room_cached(geo, xs, ys, k_hw):
    names = ("stride_h", "stride_w", "pad_top", "pad_left", "dilation_h", "dilation_w")
    p = SimpleNamespace(**dict(zip(names, geo)))
    events = [conv_events(p, xs, ys, k_hw, dsp) for dsp in (False, True)]
    rooms = [room_from_events(*ev) for ev in events]
    d, lo = [r[0] for r in rooms], [r[1] for r in rooms]
    below, above = (None if None in d else min(d)), (None if None in lo else max(lo))
    step = int(ys[3]) if int(xs[3]) == int(ys[3]) else 0
    return below, above, safe_points(events, below, above, step)


def conv_room(g: QGraph, node: QNode):
    """(D, L, points) of mq_conv2d_s8's general path for `node`, or None where it is not
    declared: grouped convs, 1x1 filters (the strided 1x1 may move to the GEMM engine) and
    first layers of <= 4 input channels (a gathered-column path may take them), whose orders
    are not modelled here."""
    p = node.params
    xs = tuple(int(v) for v in g.tensors[node.inputs[0]].shape)
    ys = tuple(int(v) for v in g.tensors[node.outputs[0]].shape)
    out_c, kh, kw, f_c = (int(v) for v in p.filter.shape)
    if f_c != xs[3] or kh * kw == 1 or f_c <= 4:
        return None
    geo = (p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.dilation_h, p.dilation_w)
    return _conv_room_cached(geo, xs, ys, (kh, kw))


def rows_chunk_above(rows: int, cin: int, cout: int, chunk: int) -> int:
    """L for chunks of `chunk` rows from the last row down (mq_conv2d_1x1_ordered_s8 reverse):
    every output byte of a chunk [r0, r0 + n) must lie at or above the end of the input still to
    be read, in + (r0 + n) * cin <= out + r0 * cout."""
    lag = None
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        r0 = rows - done - n
        d = (r0 + n) * cin - r0 * cout
        lag = d if lag is None else max(lag, d)
        done += n
    return lag if lag is not None else 0


@dataclass(frozen=True)
class Variant:
    """One C call that may compute `node`, with the output placements over input 0 it allows:
    any rel = output_offset - input_offset <= below, or >= above (None: not on that side)."""

    fn: str  # the C function
    below: int | None
    above: int | None
    reverse: bool = False
    chunk: int = 0  # 0: the kernel's own call (no mq_order argument)
    points: tuple[int, ...] = ()  # single safe rels between below and above

    def allows(self, rel: int) -> bool:
        return (
            (self.below is not None and rel <= self.below)
            or (self.above is not None and rel >= self.above)
            or rel in self.points
        )


def _sized(g: QGraph, node: QNode) -> bool:
    return (len(node.outputs) == 1 and len(g.tensors[node.inputs[0]].shape) == 4
            and len(g.tensors[node.outputs[0]].shape) == 4)


def variants(g: QGraph, node: QNode) -> list[Variant]:
    """The calls that may compute `node` with its output over its input 0, the kernel's own call
    first (codegen prefers it; for a 1x1 variant the chunk is the smallest, codegen picks the
    largest chunk the actual placement allows, see pick_variant)."""
    if node.kernel == "depthwise_conv2d" and _sized(g, node):
        d, lo, pts = _depthwise_room(g, node, False, DW_ROWS)
        out = [Variant("mq_depthwise_conv2d_s8", d, lo, points=pts)]
        for reverse in (False, True):
            d, lo, pts = _depthwise_room(g, node, reverse, 1)
            out.append(Variant("mq_depthwise_conv2d_ordered_s8", d, lo, reverse, 1, pts))
        return out
    if node.kernel == "conv2d" and _sized(g, node):
        fast = _conv1x1_rows(g, node)
        if not fast:
            room = conv_room(g, node)
            return [Variant("mq_conv2d_s8", *room[:2], points=room[2])] if room else []
        rows, cin, cout = fast
        fn = "mq_conv2d_1x1_ordered_s8"
        c = min(PW_MIN_CHUNK, rows)
        return [Variant("mq_conv2d_s8", rows_chunk_lag(rows, cin, cout), None),
                Variant(fn, rows_chunk_lag(rows, cin, cout, c), None, False, c),
                Variant(fn, None, rows_chunk_above(rows, cin, cout, c), True, c)]
    return []


def pick_variant(g: QGraph, node: QNode, rel: int) -> Variant | None:
    """The call codegen emits for `node` with its output at rel over input 0 (which overlaps
    it): the kernel's own call if it allows rel, else the ordered variant with the largest chunk
    (up to ROWS_CHUNK, 1x1) that does. None: no call allows it."""
    for v in variants(g, node):
        if v.chunk == 0 and v.allows(rel):
            return v
    for v in variants(g, node):
        if v.chunk == 0 or not v.allows(rel):
            continue
        if node.kernel != "conv2d":  # depthwise: more rows per step set up fewer blocks
            for chunk in DW_CHUNKS:
                d, lo, pts = _depthwise_room(g, node, v.reverse, chunk)
                w = Variant(v.fn, d, lo, v.reverse, chunk, pts)
                if w.allows(rel):
                    return w
            return v
        rows, cin, cout = _conv1x1_rows(g, node)  # type: ignore[misc]
        for chunk in range(min(ROWS_CHUNK, rows), v.chunk - 1, -1):
            w = (Variant(v.fn, None, rows_chunk_above(rows, cin, cout, chunk), True, chunk)
                 if v.reverse else
                 Variant(v.fn, rows_chunk_lag(rows, cin, cout, chunk), None, False, chunk))
            if w.allows(rel):
                return w
    return None


@dataclass(frozen=True)
class Room:
    """Where node's output 0 may sit over one input, rel = output_offset - input_offset: any
    rel <= below, any rel >= above, or one of points (None: nothing on that side)."""

    below: int | None
    above: int | None = None
    points: tuple[int, ...] = ()

    def allows(self, rel: int) -> bool:
        return Variant("", self.below, self.above, points=self.points).allows(rel)

    @property
    def any(self) -> bool:
        return self.below is not None or self.above is not None or bool(self.points)


def output_room(g: QGraph, node: QNode, input_index: int) -> Room:
    """The union of the placements node's variants allow over input `input_index`."""
    if input_index == 0 and node.kernel in ("depthwise_conv2d", "conv2d"):
        vs = variants(g, node)
        below = [v.below for v in vs if v.below is not None]
        above = [v.above for v in vs if v.above is not None]
        room = Room((max(below) if below else None), (min(above) if above else None))
        pts = {r for v in vs for r in v.points if not room.allows(r)}
        return Room(room.below, room.above, tuple(sorted(pts)))
    allowed = IN_PLACE_INPUTS.get(node.kernel)
    if allowed is None or input_index not in allowed or len(node.outputs) != 1:
        return Room(None)
    x, y = node.inputs[input_index], node.outputs[0]
    tx, ty = g.tensors[x], g.tensors[y]
    if tuple(tx.shape) != tuple(ty.shape):  # broadcast (or a size change): re-read, no overlap
        return Room(None)
    return Room(0)


def output_lag(g: QGraph, node: QNode, input_index: int) -> int | None:
    """The largest allowed output_offset - input_offset (bytes) for node's output 0 over its
    input `input_index` from below (every smaller offset is allowed too), or None."""
    return output_room(g, node, input_index).below


def describe(kernel: str) -> str:
    """One line of the stated access order and overlap rule of `kernel` (for docs and tests)."""
    if kernel in IN_PLACE_INPUTS:
        ins = ", ".join(str(i) for i in IN_PLACE_INPUTS[kernel])
        return (
            f"{kernel}: element i written after input element i is read, increasing order; "
            f"in place allowed over input(s) {ins} when unbroadcast (output_offset <= input_offset)"
        )
    return f"{kernel}: no overlap between output and inputs"
