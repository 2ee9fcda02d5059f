"""The overlap variants and the conv kernels' declared rooms (codegen/overlap.py, issue 12): each
kernel run with its output over its input, in one buffer, at exactly the offsets its declared
facts allow (the edges of its room and its single safe points) and further out, against the
numpy reference. Being a test_kernel_* file, every call here is also replayed on the emulated
Cortex-M4 with the DSP paths on and off (test_dsp_case_tables) and under ASan/UBSan
(test_sanitizers), buffers and interior pointers as recorded. That one byte less room breaks the
result is shown in tests/test_overlap.py."""

from __future__ import annotations

import numpy as np
import pytest
from cmsis_cases import assert_exact, weighted_args
from test_kernel_conv import make_case

from microq.codegen.overlap import depthwise_room, rows_chunk_above, rows_chunk_lag
from microq.ref.conv import conv2d, depthwise_conv2d

# depthwise cases: 4-channel blocks with DSP two-pixel passes (w 5, 7), a channel tail,
# stride 2, multiplier 2 with a batch of 2 (tail path only), 5x5 valid, dilation 2
DW = {
    "k3_pad1_w5": dict(n=1, h=7, w=5, cin=8, k=(3, 3), pads=(1, 1, 1, 1)),
    "k3_pad1_blocks_and_tail": dict(n=1, h=6, w=7, cin=10, k=(3, 3), pads=(1, 1, 1, 1)),
    "k3_stride2": dict(n=1, h=11, w=9, cin=8, k=(3, 3), stride=(2, 2), pads=(0, 0, 1, 1)),
    "k3_batch2_mult2": dict(n=2, h=5, w=4, cin=3, ch_mult=2, k=(3, 3), pads=(1, 1, 1, 1)),
    "k5_valid": dict(n=1, h=9, w=8, cin=4, k=(5, 5)),
    "k3_dil2": dict(n=1, h=8, w=8, cin=4, k=(3, 3), dil=(2, 2), pads=(2, 2, 2, 2)),
}
# (reverse, chunk); chunk 0: mq_depthwise_conv2d_s8 itself (forward, DW_ROWS rows per chunk)
DW_ORDERS = [(False, 0), (False, 1), (True, 1), (False, 3), (True, 2), (True, 4)]


def run_overlapped(clib, fn: str, order, p, x: np.ndarray, out_shape, rel: int) -> np.ndarray:
    """`fn` with x at `base` of one int8 buffer and the output at base + rel in the same buffer
    (order: None, or (reverse, chunk) for the mq_order argument). Returns the output."""
    ffi, lib = clib
    out_size = int(np.prod(out_shape))
    base = max(0, -rel) + 8
    buf = np.zeros(base + max(x.size, rel + out_size) + 8, np.int8)
    buf[base : base + x.size] = x.reshape(-1)
    cbuf = ffi.from_buffer("int8_t[]", buf)
    cp, quant, bias, _keep = weighted_args(ffi, p)
    fs = np.ascontiguousarray(p.filter, np.int8)
    args = [cp, quant, ffi.new("mq_dims *", x.shape), cbuf + base,
            ffi.new("mq_dims *", p.filter.shape), ffi.from_buffer("int8_t[]", fs), bias,
            ffi.new("mq_dims *", tuple(out_shape)), cbuf + base + rel]
    if order is not None:
        args.insert(0, ffi.new("mq_order *", {"reverse": int(order[0]), "chunk": order[1]}))
    assert getattr(lib, fn)(*args) == lib.MQ_OK
    return buf[base + rel : base + rel + out_size].reshape(out_shape).copy()


def dw_case(case: str, **over):
    p, x, out_hw = make_case(len(case), depthwise=True, **{**DW[case], **over})
    expected = depthwise_conv2d(p, x, out_hw, "double")
    return p, x, expected


def dw_call(reverse: bool, chunk: int):
    if chunk == 0:
        return "mq_depthwise_conv2d_s8", None
    return "mq_depthwise_conv2d_ordered_s8", (reverse, chunk)


def dw_room(p, x, expected, reverse, chunk, builds=(False, True)):
    from microq.codegen.overlap import DW_ROWS

    k_hw = p.filter.shape[1:3]
    return depthwise_room(p, x.shape, expected.shape, k_hw, reverse, chunk or DW_ROWS, builds)


@pytest.mark.parametrize("reverse,chunk", DW_ORDERS)
@pytest.mark.parametrize("case", list(DW))
def test_depthwise_at_every_edge_of_its_declared_room_equals_ref(clib, case, reverse, chunk):
    p, x, expected = dw_case(case)
    below, above, points = dw_room(p, x, expected, reverse, chunk)
    assert below is not None and above is not None
    fn, order = dw_call(reverse, chunk)
    rels = [below, below - 1, below - 13, above, above + 1, above + 7,
            *points[:2], *points[-2:]]
    for rel in rels:
        got = run_overlapped(clib, fn, order, p, x, expected.shape, rel)
        assert_exact(got, expected, f"{fn} {case} order {order} output at input{rel:+d}")


def test_depthwise_orders_declare_the_room_the_planner_uses_for_kws01_rows():
    """On a kws01-like layer (W 5, 64 channels, 3x3 pad 1) the reverse orders allow their output
    exactly one row and one pixel above the input (384 B: the nearest pixel-aligned point, inside
    the interval edge), the forward orders the same distance below."""
    p, x, out_hw = make_case(7, depthwise=True, n=1, h=25, w=5, cin=64, k=(3, 3),
                             pads=(1, 1, 1, 1))
    y = depthwise_conv2d(p, x, out_hw, "double")
    for reverse, chunk in DW_ORDERS:
        below, above, points = dw_room(p, x, y, reverse, chunk)
        if reverse:
            assert points[0] == 384 and above > 384 and below == -8000
        else:
            assert points[-1] == -384 and below < -384 and above == 8000


# 1x1: (n, h, w, cin, cout): narrowing, same width over a batch of 2, widening (DSP pairs)
PW = {
    "narrowing": (1, 4, 7, 12, 5),
    "same_width": (2, 3, 5, 8, 8),
    "widening": (1, 5, 6, 8, 16),
}


def pw_case(case: str):
    n, h, w, cin, cout = PW[case]
    p, x, out_hw = make_case(len(case) + 50, n=n, h=h, w=w, cin=cin, cout=cout, k=(1, 1))
    return p, x, conv2d(p, x, out_hw, "double")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 7])
@pytest.mark.parametrize("case", list(PW))
def test_conv1x1_ordered_at_its_declared_room_equals_ref(clib, case, chunk, reverse):
    p, x, expected = pw_case(case)
    n, h, w, cin, cout = PW[case]
    rows = n * h * w
    if reverse:
        edge = rows_chunk_above(rows, cin, cout, chunk)
        rels = [edge, edge + 1, edge + 29]
    else:
        edge = rows_chunk_lag(rows, cin, cout, chunk)
        rels = [edge, edge - 1, edge - 29]
    for rel in rels:
        got = run_overlapped(clib, "mq_conv2d_1x1_ordered_s8", (reverse, chunk), p, x,
                             expected.shape, rel)
        assert_exact(got, expected, f"1x1 {case} chunk {chunk} rev {reverse} at input{rel:+d}")


def test_ordered_variants_refuse_bad_orders_and_shapes(clib):
    ffi, lib = clib
    p, x, expected = pw_case("same_width")
    for order in [(False, 0), (True, -3)]:
        with pytest.raises(AssertionError):
            run_overlapped(clib, "mq_conv2d_1x1_ordered_s8", order, p, x, expected.shape, 0)
    # a 3x3 filter is not a 1x1 convolution
    q, y, out_hw = make_case(3, n=1, h=5, w=5, cin=4, cout=4, k=(3, 3), pads=(1, 1, 1, 1))
    with pytest.raises(AssertionError):
        run_overlapped(clib, "mq_conv2d_1x1_ordered_s8", (False, 2), q, y, (1, 5, 5, 4), 200)
    p, x, expected = dw_case("k3_pad1_w5")
    with pytest.raises(AssertionError):
        run_overlapped(clib, "mq_depthwise_conv2d_ordered_s8", (False, 0), p, x,
                       expected.shape, 1000)


# kxk conv (mq_conv2d_s8's general path, one group, > 4 input channels): 3x3 pad 1 with DSP
# pixel pairs, stride 2 widening, a batch of 2 with an odd filter count (blocks of 4, 2, 1)
CONV = {
    "k3_pad1": dict(n=1, h=6, w=7, cin=8, cout=8, k=(3, 3), pads=(1, 1, 1, 1)),
    "k3_stride2_widening": dict(n=1, h=9, w=8, cin=8, cout=16, k=(3, 3), stride=(2, 2),
                                pads=(0, 0, 1, 1)),
    "k3_batch2_odd_filters": dict(n=2, h=5, w=5, cin=6, cout=7, k=(3, 3), pads=(1, 1, 1, 1)),
}


def conv_case(case: str, **over):
    p, x, out_hw = make_case(len(case) + 90, **{**CONV[case], **over})
    return p, x, conv2d(p, x, out_hw, "double")


def conv_room_of(p, x, y, builds=(False, True)):
    from microq.codegen.overlap import conv_room
    from microq.qir import QGraph, QNode, QTensor

    tensors = {"x": QTensor("x", x.shape, None), "y": QTensor("y", y.shape, None)}
    g = QGraph("c", tensors, [], ["x"], ["y"])
    if builds == (False, True):
        return conv_room(g, QNode("c", "conv2d", ["x"], ["y"], p))
    from microq.codegen.overlap import conv_events, room_from_events

    return room_from_events(*conv_events(p, x.shape, y.shape, p.filter.shape[1:3], builds[0]))


@pytest.mark.parametrize("case", list(CONV))
def test_conv_kxk_at_every_edge_of_its_declared_room_equals_ref(clib, case):
    p, x, expected = conv_case(case)
    below, above, points = conv_room_of(p, x, expected)
    for rel in [below, below - 1, below - 9, above, above + 1, *points[:2], *points[-2:]]:
        got = run_overlapped(clib, "mq_conv2d_s8", None, p, x, expected.shape, rel)
        assert_exact(got, expected, f"conv {case} output at input{rel:+d}")
