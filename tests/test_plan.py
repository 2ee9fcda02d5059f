"""Arena planning: lifetimes, homes, greedy placement never overlaps live buffers."""

from __future__ import annotations

import numpy as np
import pytest
from microq.codegen.plan import (
    check_plan,
    greedy_place,
    liveness_lower_bound,
    plan_graph,
)
from test_codegen import GRAPHS


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_plan_is_valid(name):
    plan = plan_graph(GRAPHS[name]())
    check_plan(plan)
    # in-place overlaps may go below the tensor-granular bound, never below the overlap-aware one
    assert plan.arena_size >= (plan.overlap_bound if plan.overlaps else plan.lower_bound)
    assert plan.arena_size <= greedy_arena(plan)  # the plain greedy placement is the fallback
    assert plan.arena_size % 4 == 0


def greedy_arena(plan) -> int:
    arena = plan.arena_buffers()
    return greedy_place([b.size for b in arena], [(b.first, b.last) for b in arena])[1]


def test_chain_homes_and_aliases():
    g = GRAPHS["chain"]()
    plan = plan_graph(g)
    assert plan.buffer("input_1").home == "input"
    assert plan.buffer("probs").home == "output"
    assert plan.buffer("flat") is plan.buffer("gap")  # reshape aliases its input
    arena = {t for b in plan.arena_buffers() for t in b.tensors}
    assert arena == {"conv", "act", "pool", "dw", "res", "gap", "flat", "logits"}
    # "pool" is read by depthwise (L3) and add (L4): live L2..L4, so it cannot share with dw/res
    b = plan.buffer("pool")
    assert (b.first, b.last) == (2, 4)
    assert plan.copies == ()


def test_chain_reuses_memory():
    plan = plan_graph(GRAPHS["chain"]())
    total = sum(b.size for b in plan.arena_buffers())
    assert plan.arena_size < total  # conv (512 B) dies at L1: its memory is reused
    # conv [1,8,8,8] and act live together at L1: the bound is at least both
    assert plan.lower_bound >= 2 * 512


def test_multi_outputs_copy():
    g = GRAPHS["multi"]()
    plan = plan_graph(g)
    assert plan.buffer("c") is plan.buffer("y1")
    assert plan.buffer("c").home == "output" and plan.buffer("c").index == 0
    assert plan.copies == ((1, "y1"),)
    assert plan.buffer("b").home == "input" and plan.buffer("b").index == 1
    assert plan.arena_buffers()[0].tensors == ("s",)


def test_passthrough_has_empty_arena():
    plan = plan_graph(GRAPHS["passthrough"]())
    assert plan.arena_size == 0 and plan.lower_bound == 0
    assert plan.copies == ((0, "y"),)


def test_data_const_operand():
    plan = plan_graph(GRAPHS["data"]())
    assert plan.buffer("scale_c").home == "const"
    # "rq" is read by sub (L2) and twice by concat (L3): live until its last reader
    assert (plan.buffer("rq").first, plan.buffer("rq").last) == (0, 3)
    assert (plan.buffer("d").first, plan.buffer("d").last) == (2, 3)


def test_greedy_known_layout():
    # three buffers: 0 and 1 overlap in time, 2 only after both
    offsets, arena = greedy_place([100, 50, 120], [(0, 1), (1, 2), (3, 4)])
    assert offsets == [0, 100, 0]  # 2 (largest) first at 0, 0 also at 0 (disjoint in time)
    assert arena == 152  # 100 + 50 rounded up to 4


def test_greedy_fills_gap():
    # a small buffer drops into the hole between two live ones
    offsets, _ = greedy_place([64, 64, 8, 16], [(0, 3), (2, 3), (0, 1), (2, 3)])
    # 0 at 0; 1 at 64 (overlaps 0); 3 at 128; 2 overlaps only 0 -> 64
    assert offsets == [0, 64, 64, 128]


@pytest.mark.parametrize("seed", range(20))
def test_greedy_random_never_overlaps(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    sizes = [int(s) for s in rng.integers(1, 500, n)]
    starts = rng.integers(0, 20, n)
    lifetimes = [(int(s), int(s + rng.integers(0, 6))) for s in starts]
    offsets, arena = greedy_place(sizes, lifetimes)
    for i in range(n):
        assert offsets[i] % 4 == 0 and offsets[i] + sizes[i] <= arena
        for j in range(i + 1, n):
            (a0, a1), (b0, b1) = lifetimes[i], lifetimes[j]
            if a0 <= b1 and b0 <= a1:
                assert offsets[i] + sizes[i] <= offsets[j] or offsets[j] + sizes[j] <= offsets[i]
    assert arena >= liveness_lower_bound(sizes, lifetimes)


def test_check_plan_catches_overlap():
    from dataclasses import replace

    plan = plan_graph(GRAPHS["chain"]())
    bufs = list(plan.buffers)
    i = plan.tensor_buffer["pool"]
    j = plan.tensor_buffer["dw"]
    bufs[j] = replace(bufs[j], offset=bufs[i].offset)
    with pytest.raises(AssertionError, match="overlaps"):
        check_plan(replace(plan, buffers=tuple(bufs)))
