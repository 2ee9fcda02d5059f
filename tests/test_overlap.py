"""Overlapping output/input buffers (codegen/overlap.py): every kernel family the planner may run
in place is run by the host C runtime with its output at exactly the declared offset over its
input (and further down), against the numpy reference; one byte less room must break it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from cmsis_cases import assert_exact
from test_codegen import GRAPHS
from test_kernel_elementwise import random_binary_params

from microq.codegen.overlap import IN_PLACE_INPUTS, output_lag, rows_chunk_lag
from microq.codegen.plan import check_plan, greedy_place, plan_graph
from microq.qir import LutParams
from microq.quant import scheme
from microq.quant.rules_minmax import prelu_params
from microq.ref import elementwise as ew
from microq.ref import minmax

SHAPE = (2, 5, 7, 6)  # 420 elements
PAD = 512  # bytes of room below and above the input in the shared buffer


def _run(clib, kernel: str, p, x: np.ndarray, other: np.ndarray | None, slot: int, shift: int):
    """Run `kernel` with input `slot` (x) inside one buffer at PAD and the output at PAD + shift
    in the same buffer; the other operand (if any) in its own array. Returns the output."""
    ffi, lib = clib
    buf = np.zeros(x.size + 2 * PAD, np.int8)
    buf[PAD : PAD + x.size] = x.reshape(-1)
    cbuf = ffi.from_buffer("int8_t[]", buf)
    xin, out = cbuf + PAD, cbuf + PAD + shift
    if kernel == "lut":
        table = ffi.from_buffer("int8_t[]", p.table)
        assert lib.mq_lut_s8(table, x.size, xin, out) == lib.MQ_OK
    elif kernel == "requantize":
        params = ffi.new("mq_requantize_params *", asdict(p))
        assert lib.mq_requantize_s8(params, x.size, xin, out) == lib.MQ_OK
    else:
        o = ffi.from_buffer("int8_t[]", np.ascontiguousarray(other))
        a, b = (xin, o) if slot == 0 else (o, xin)
        sa, sb = (x.shape, other.shape) if slot == 0 else (other.shape, x.shape)
        bc = ffi.new("mq_broadcast *", ew.broadcast_struct(sa, sb))
        struct = {"mul": "mq_mul_params *", "prelu": "mq_prelu_params *"}.get(
            kernel, "mq_add_params *"
        )
        status = getattr(lib, f"mq_{kernel}_s8")(ffi.new(struct, asdict(p)), bc, a, b, out)
        assert status == lib.MQ_OK
    return buf[PAD + shift : PAD + shift + x.size].reshape(x.shape).copy()


def _case(kernel: str, slot: int, other_shape: tuple[int, ...], seed: int):
    """(params, x, other, expected) for one randomized case."""
    rng = np.random.default_rng([seed, slot, sum(map(ord, kernel))])
    x = rng.integers(-128, 128, SHAPE).astype(np.int8)
    other = rng.integers(-128, 128, other_shape).astype(np.int8) if other_shape else None
    if kernel == "lut":
        p = LutParams(rng.integers(-128, 128, 256).astype(np.int8), "random")
        return p, x, None, ew.lut(p, x)
    if kernel == "requantize":
        p = scheme.requantize_params(0.02, 5, 0.013, -3)
        return p, x, None, ew.requantize(p, x)
    if kernel == "prelu":
        p = prelu_params(0.05, 3, 0.01, 2, 0.04, -7)
        return p, x, other, minmax.prelu(p, x, other)
    p = random_binary_params("mul" if kernel == "mul" else "add", rng, "double")
    a, b = (x, other) if slot == 0 else (other, x)
    fn = getattr(ew, kernel, None) or getattr(minmax, kernel)
    return p, x, other, fn(p, a, b)


# the other operand: same shape, or broadcast over the overlapped input (per-channel, scalar)
OTHERS = {"same": SHAPE, "per_channel": (1, 1, 1, 6), "row": (1, 5, 1, 6)}


def _families():
    for kernel, slots in IN_PLACE_INPUTS.items():
        for slot in slots:
            if kernel in ("lut", "requantize"):
                yield kernel, slot, None
            else:
                for name in OTHERS:
                    yield kernel, slot, name


@pytest.mark.parametrize("kernel,slot,other", list(_families()))
def test_output_at_declared_lag_and_below_equals_ref(clib, kernel, slot, other):
    lag = 0  # every enabled family declares in place (output_offset <= input_offset + 0)
    p, x, o, expected = _case(kernel, slot, OTHERS[other] if other else (), seed=1)
    for shift in (lag, lag - 1, lag - 5, -x.size // 2):
        got = _run(clib, kernel, p, x, o, slot, shift)
        assert_exact(got, expected, f"{kernel} slot {slot} ({other}) output at input{shift:+d}")


@pytest.mark.parametrize("kernel", ["lut", "requantize", "add", "mul"])
def test_one_byte_less_overlap_room_fails(clib, kernel):
    """Output one byte above the declared lag: out[0] overwrites x[1] before it is read, so the
    result differs from the reference: the test of the lag above can fail."""
    p, x, o, expected = _case(kernel, 0, () if kernel in ("lut", "requantize") else SHAPE, 1)
    got = _run(clib, kernel, p, x, o, 0, 1)
    assert not np.array_equal(got, expected), f"{kernel}: a lag of +1 went unnoticed"


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_lags_only_for_unbroadcast_elementwise_convs_and_depthwise(name):
    g = GRAPHS[name]()
    for node in g.nodes:
        for k in range(len(node.inputs)):
            lag = output_lag(g, node, k)
            if node.kernel == "conv2d" and lag is not None:
                p, filt = node.params, node.params.filter
                if filt.shape[1:3] == (1, 1):  # chunked 1x1 fast path only
                    assert (p.stride_h, p.stride_w) == (1, 1), node.name
                else:  # the general path: one group, more than 4 input channels
                    assert filt.shape[3] == g.tensors[node.inputs[0]].shape[3] > 4, node.name
                assert k == 0 and lag < 0  # output below the input
            elif node.kernel == "depthwise_conv2d" and lag is not None:
                assert k == 0 and lag < 0  # row chunks: the output starts below the input
            elif node.kernel not in IN_PLACE_INPUTS:
                # kxk conv, fully connected, pools: filter/channel blocks outermost re-read the
                # whole input, so no overlap is declared for them
                assert lag is None, node.kernel
            elif g.tensors[node.inputs[k]].shape != g.tensors[node.outputs[0]].shape:
                assert lag is None, f"{node.kernel} broadcast input {k}"


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_overlap_plan_is_valid_and_never_above_greedy(name):
    plan = plan_graph(GRAPHS[name]())
    check_plan(plan)
    arena = plan.arena_buffers()
    greedy = greedy_place([b.size for b in arena], [(b.first, b.last) for b in arena])[1]
    assert plan.arena_size <= greedy
    for i, j, d in plan.overlaps:
        a, b = plan.buffers[i], plan.buffers[j]
        assert a.last == b.first, "an overlap pair shares exactly one step (the kernel's)"
        assert b.offset <= a.offset + d


def test_chain_runs_an_add_in_place_below_the_liveness_bound():
    """The chain graph's add (res = dw + pool) writes over its dying input: the arena goes below
    the tensor-granular liveness bound (the model run itself is checked bit-exact in
    test_codegen)."""
    plan = plan_graph(GRAPHS["chain"]())
    assert plan.overlaps, "no overlap chosen"
    assert plan.overlap_bound <= plan.arena_size < plan.lower_bound


def test_compile_line_shows_the_overlap_aware_bound_where_it_differs():
    from microq.cli import _overlap_line

    assert _overlap_line(GRAPHS["chain"]()) == (
        "arena 640 B, liveness bound 1,024 B, overlap-aware bound 640 B (1 kernel(s) in place)"
    )
    assert _overlap_line(GRAPHS["multi"]()) == ""  # nothing in place: the summary line suffices


# --- 1x1 conv (mq_conv2d_s8 fast path, chunks of ROWS_CHUNK rows) ----------------------------


def _conv1x1_overlapped(clib, p, x, shift: int, out_hw=None, depthwise=False) -> np.ndarray:
    """mq_conv2d_s8 (mq_depthwise_conv2d_s8) with x at `base` in one buffer and the output at
    base + shift."""
    from cmsis_cases import weighted_args

    ffi, lib = clib
    n, h, w, cin = x.shape
    cout = p.filter.shape[3] if depthwise else p.filter.shape[0]
    h, w = out_hw or (h, w)
    cp, quant, bias, _keep = weighted_args(ffi, p)
    base = max(0, -shift) + 16
    buf = np.zeros(base + max(x.size, shift + n * h * w * cout) + 16, np.int8)
    buf[base : base + x.size] = x.reshape(-1)
    cbuf = ffi.from_buffer("int8_t[]", buf)
    fs = np.ascontiguousarray(p.filter, np.int8)
    fn = lib.mq_depthwise_conv2d_s8 if depthwise else lib.mq_conv2d_s8
    status = fn(
        cp, quant, ffi.new("mq_dims *", x.shape), cbuf + base,
        ffi.new("mq_dims *", p.filter.shape), ffi.from_buffer("int8_t[]", fs), bias,
        ffi.new("mq_dims *", (n, h, w, cout)), cbuf + base + shift,
    )  # fmt: skip
    assert status == 0
    start = base + shift
    return buf[start : start + n * h * w * cout].reshape(n, h, w, cout).copy()


# (n, h, w, cin, cout): rows over 2-3 chunks with a short last chunk; cout <, =, > cin
CONV1X1 = {
    "narrowing": (1, 20, 30, 12, 5),
    "same_width": (2, 13, 11, 8, 8),
    "widening_dsp_pairs": (1, 16, 33, 8, 16),
}


@pytest.mark.parametrize("case", list(CONV1X1))
def test_conv1x1_output_at_declared_lag_equals_ref(rt, case):
    from test_kernel_conv import make_case

    from microq.codegen.overlap import ROWS_CHUNK, rows_chunk_lag
    from microq.ref.conv import conv2d

    ffi, lib, rounding = rt
    n, h, w, cin, cout = CONV1X1[case]
    p, x, out_hw = make_case(len(case), n=n, h=h, w=w, cin=cin, cout=cout, k=(1, 1))
    expected = conv2d(p, x, out_hw, rounding)
    lag = rows_chunk_lag(n * h * w, cin, cout)
    assert n * h * w > ROWS_CHUNK and lag < 0
    for shift in (lag, lag - 1, lag - 37):
        got = _conv1x1_overlapped((ffi, lib), p, x, shift)
        assert_exact(got, expected, f"conv1x1 {case} output at input{shift:+d} ({rounding})")
    # The declared lag assumes any output byte of a chunk may be written before any of its input
    # bytes is read; the kernel's very last writes (last filter block) come after the reads they
    # could clobber, so the exact limit lies less than one output row (cout bytes) above the
    # lag. One output row less room overwrites, in an earlier filter block, input of the chunk
    # that later filter blocks still read: it must break the result.
    bad = _conv1x1_overlapped((ffi, lib), p, x, lag + cout)
    assert not np.array_equal(bad, expected), f"{case}: lag + {cout} went unnoticed"


@pytest.fixture(params=["double", "single"])
def rt(request):
    ffi, lib = request.getfixturevalue("clib" if request.param == "double" else "clib_single")
    return ffi, lib, request.param


def test_rows_chunk_lag_matches_the_c_chunk_size():
    from microq.codegen.overlap import ROWS_CHUNK, rows_chunk_lag

    src = (Path(__file__).resolve().parents[1] / "c_runtime/src/mq_conv.c").read_text()
    assert f"#define MQ_ROWS_CHUNK {ROWS_CHUNK}\n" in src
    # one chunk: the whole output must end at the input's start
    assert rows_chunk_lag(10, 4, 6) == -60
    # widening over 2 chunks of ROWS_CHUNK + 1: worst at the last chunk start
    r = ROWS_CHUNK
    assert rows_chunk_lag(r + 1, 8, 16) == min(-r * 16, r * 8 - (r + 1) * 16)


def _mlperf_plan(file: str):
    from conftest import MODELS, require

    from microq.tflite_import import import_tflite

    g = import_tflite(str(require(MODELS / "tflite" / file, f"MLPerf Tiny {file}")))
    plan = plan_graph(g)
    check_plan(plan)
    return g, plan


def test_vww01_convs_run_over_their_inputs_below_the_liveness_bound():
    """vww01's pointwise (chunked 1x1) and depthwise convs write over their dying inputs: the
    arena drops from the tensor-granular 55,296 B to 36,928 B (issue 12 goal <= 38,000; it was
    39,680 B with the conservative row-chunk lags; TFLite Micro: 73,728 B). The generated code is
    checked bit-exact with TFLite Micro in test_tflite and on the emulated M4 in test_mcu."""
    g, plan = _mlperf_plan("vww_96_int8.tflite")
    assert plan.lower_bound == 55296
    assert plan.overlap_bound <= plan.arena_size <= 38000
    producers = {n.outputs[0]: n.kernel for n in g.nodes}
    kinds = {producers[plan.buffers[j].root] for _, j, _ in plan.overlaps}
    assert {"conv2d", "depthwise_conv2d"} <= kinds


def test_kws01_alternates_kernel_order_so_the_arena_holds_one_tensor_and_a_gap():
    """kws01 (DS-CNN: 4 x depthwise 3x3 -> pointwise 1x1, every activation 25x5x64 = 8,000 B):
    each depthwise runs in reverse order (4 rows a step) with its output 512 B above its input
    (one row and one pixel, 384 B, is its least), each pointwise forward in chunks of 8 pixels
    (overlap.PW_MIN_CHUNK) 512 B back down, so the drift cancels and the arena is 8,000 + 512 B
    (issue 12 goal <= 8,600; was 16,000 = TFLite Micro's)."""
    from microq.codegen.overlap import PW_MIN_CHUNK, pick_variant

    g, plan = _mlperf_plan("kws_ref_model.tflite")
    assert plan.lower_bound == 16000
    gap = PW_MIN_CHUNK * 64
    assert plan.arena_size == plan.overlap_bound == 8000 + gap <= 8600
    by_out = {n.outputs[0]: n for n in g.nodes}
    calls = []
    for i, j, rel in plan.overlaps:
        node = by_out[plan.buffers[j].root]
        v = pick_variant(g, node, rel)
        calls.append((node.kernel, v.fn, v.reverse, v.chunk, rel))
    assert calls == [("depthwise_conv2d", "mq_depthwise_conv2d_ordered_s8", True, 4, gap),
                     ("conv2d", "mq_conv2d_1x1_ordered_s8", False, PW_MIN_CHUNK, -gap)] * 4


def test_plot_memory_draws_a_png_and_names_matplotlib_when_missing(tmp_path, monkeypatch):
    import sys

    from microq.codegen.memplot import HINT, plot_memory
    from microq.errors import MicroqError

    g = GRAPHS["chain"]()
    out = tmp_path / "mem.png"
    plot_memory(g, plan_graph(g), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 2000
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MicroqError, match="matplotlib") as e:
        plot_memory(g, plan_graph(g), tmp_path / "no.png")
    assert str(e.value) == HINT and not (tmp_path / "no.png").exists()


# depthwise: (n, h, w, c, ch_mult, k, stride, pads); 4-channel blocks plus a tail, the DSP
# 2-pixel core (3 columns, stride 1), stride 2 and a batch of 2
DW = {
    "k3_pad1_blocks_and_tail": dict(n=1, h=9, w=7, cin=10, k=(3, 3), pads=(1, 1, 1, 1)),
    "k3_stride2": dict(n=1, h=11, w=9, cin=8, k=(3, 3), stride=(2, 2), pads=(0, 0, 1, 1)),
    "k3_batch2_mult2": dict(n=2, h=6, w=5, cin=3, ch_mult=2, k=(3, 3), pads=(1, 1, 1, 1)),
    "k5_valid": dict(n=1, h=10, w=8, cin=8, k=(5, 5)),
}


@pytest.mark.parametrize("case", list(DW))
def test_depthwise_output_at_declared_lag_equals_ref(rt, case):
    from test_kernel_conv import make_case

    from microq.codegen.overlap import dw_rows_lag
    from microq.qir import QGraph, QNode, QTensor
    from microq.ref.conv import depthwise_conv2d

    ffi, lib, rounding = rt
    p, x, out_hw = make_case(len(case), depthwise=True, **DW[case])
    expected = depthwise_conv2d(p, x, out_hw, rounding)
    tensors = {"x": QTensor("x", x.shape, None), "y": QTensor("y", expected.shape, None)}
    g = QGraph("dw", tensors, [], ["x"], ["y"])
    lag = dw_rows_lag(g, QNode("dw", "depthwise_conv2d", ["x"], ["y"], p))
    for shift in (lag, lag - 1, lag - 29):
        got = _conv1x1_overlapped((ffi, lib), p, x, shift, out_hw, depthwise=True)
        assert_exact(got, expected, f"depthwise {case} output at input{shift:+d} ({rounding})")
    # Conservative like the 1x1 lag: a chunk's writes over input it already consumed for the
    # same channels are harmless, so the exact limit is above the lag. A row and half a pixel
    # less room puts channel block 0's writes on channels a later block of the chunk still
    # reads: it must break the result.
    more = out_hw[1] * expected.shape[3] + expected.shape[3] // 2
    bad = _conv1x1_overlapped((ffi, lib), p, x, lag + more, out_hw, depthwise=True)
    assert not np.array_equal(bad, expected), f"{case}: lag + {more} went unnoticed"


# --- the ordered variants: one byte less room than declared breaks the result (host) ----------


@pytest.mark.parametrize("reverse,chunk", [(False, 0), (False, 1), (True, 1), (True, 2)])
# (k3_stride2 is left out: one byte past its edges clobbers a single input byte, whose change
# the requantized output may round away)
@pytest.mark.parametrize("case", ["k3_pad1_w5", "k3_pad1_blocks_and_tail", "k3_batch2_mult2",
                                  "k5_valid", "k3_dil2"])
def test_depthwise_one_byte_less_room_than_declared_fails(clib, case, reverse, chunk):
    """The rooms are exact for the build that runs (the portable one on the host): at one byte
    past either interval edge (D + 1, L - 1) and one byte past a pixel-aligned safe point, some
    output byte lands on an input byte that is read after it is written, and the result differs
    from the reference. (The declared room, valid for both builds, is checked at its edges in
    test_kernel_overlap, here and on the emulated M4.)"""
    from test_kernel_overlap import dw_call, dw_case, dw_room, run_overlapped

    p, x, expected = dw_case(case, bias=None, in_off=0, out_off=0)  # few saturated outputs
    assert (np.abs(expected.astype(int)) >= 127).mean() < 0.2
    below, above, points = dw_room(p, x, expected, reverse, chunk, builds=(False,))
    fn, order = dw_call(reverse, chunk)
    for rel in (below, above, *points):
        assert_exact(run_overlapped(clib, fn, order, p, x, expected.shape, rel), expected, "ok")
    bad = [below + 1, above - 1]
    bad += [r + 1 for r in points if r + 1 < above]
    for rel in bad:
        got = run_overlapped(clib, fn, order, p, x, expected.shape, rel)
        assert not np.array_equal(got, expected), f"{fn} {case} {order}: {rel:+d} went unnoticed"


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", ["narrowing", "same_width", "widening"])
def test_conv1x1_ordered_one_row_less_room_fails(clib, case, reverse):
    """The 1x1 variants declare that the engine (mq_rows_s8, owned by the GEMM work) may touch
    a chunk's pixels in any order, so the room is exact up to less than one output row: one
    output row (C_out bytes) past the edge, an earlier filter block overwrites input a later
    block of the same chunk still reads."""
    from test_kernel_overlap import PW, pw_case, run_overlapped

    from microq.codegen.overlap import rows_chunk_above

    p, x, expected = pw_case(case)
    n, h, w, cin, cout = PW[case]
    for chunk in (1, 3):
        if reverse:
            rel = rows_chunk_above(n * h * w, cin, cout, chunk) - cout
        else:
            rel = rows_chunk_lag(n * h * w, cin, cout, chunk) + cout
        got = run_overlapped(clib, "mq_conv2d_1x1_ordered_s8", (reverse, chunk), p, x,
                             expected.shape, rel)
        assert not np.array_equal(got, expected), f"{case} chunk {chunk}: {rel:+d} unnoticed"


@pytest.mark.parametrize("case", ["k3_pad1", "k3_stride2_widening", "k3_batch2_odd_filters"])
def test_conv_kxk_one_byte_less_room_than_declared_fails(clib, case):
    """mq_conv2d_s8's general path (pixels in order, filter blocks inside a pixel, each block
    reading all the pixel's taps): its room is exact for the build that runs; one byte past
    either edge breaks the result."""
    from test_kernel_overlap import conv_case, conv_room_of, run_overlapped

    p, x, expected = conv_case(case, bias=None, in_off=0, out_off=0)
    below, above = conv_room_of(p, x, expected, builds=(False,))
    for rel, ok in ((below, True), (below + 1, False), (above, True), (above - 1, False)):
        got = run_overlapped(clib, "mq_conv2d_s8", None, p, x, expected.shape, rel)
        assert np.array_equal(got, expected) == ok, f"conv {case} at {rel:+d}: ok should be {ok}"


def test_ic01_residual_stages_fit_below_34000():
    """ic01 (ResNet-8): the 3x3 convs write over their dying inputs (output one row and two
    pixels below), the adds in place: 49,152 -> 33,328 B (issue 12 goal <= 34,000; TFLite Micro
    49,152 B); ad01 reaches its liveness bound (256 B, was 264) with the shuffled orders."""
    _, plan = _mlperf_plan("pretrainedResnet_quant.tflite")
    assert plan.lower_bound == 49152
    assert plan.overlap_bound <= plan.arena_size <= 34000
    _, plan = _mlperf_plan("ad01_int8.tflite")
    assert plan.arena_size == plan.lower_bound == 256


MLPERF_TFLITE = {"vww01": "vww_96_int8.tflite", "ic01": "pretrainedResnet_quant.tflite",
                 "kws01": "kws_ref_model.tflite", "sww01": "str_ww_ref_model.tflite",
                 "ad01": "ad01_int8.tflite"}


@pytest.mark.parametrize("key", list(MLPERF_TFLITE))
def test_mlperf_arena_never_above_the_liveness_bound(key):
    """Every MLPerf Tiny model: a valid plan, at or below the tensor-granular liveness bound,
    at or above the overlap-aware bound."""
    _, plan = _mlperf_plan(MLPERF_TFLITE[key])
    assert plan.arena_size <= plan.lower_bound
    if plan.overlaps:
        assert plan.overlap_bound <= plan.arena_size
