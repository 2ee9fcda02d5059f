"""Offline arena planning for codegen: tensor lifetimes, buffer homes, greedy-by-size placement.

Where each activation lives (its buffer's `home`):
- "input":  a graph input is read straight from the user's const input pointer (no copy);
- "output": a graph output is written by its producing kernel straight into the user's output
            pointer (every kernel can write to any pointer);
- "const":  a tensor with constant data is a `const` array in flash;
- "arena":  everything else shares one static arena, placed here.
A `reshape` output aliases its input: both tensors form one buffer (same home and offset, merged
lifetime). When one buffer holds several graph outputs, or a graph input and a graph output, only
its first such tensor is its home; each other graph output is copied into its pointer at the
end of invoke (`Plan.copies`).

Steps are node indices. A graph input is live from step 0; every graph output until the last
step; any other tensor from its producer's step to its last consumer's step (both inclusive), so
a kernel's inputs and output never share memory — except where overlap.py states that a kernel
is correct with its output at some offset over an input that dies at that kernel (`Plan.overlaps`;
e.g. in-place element-wise ops and lookups, depthwise and 1x1 variants in a stated order). The
overlap-aware placement is tried next to the plain greedy one and the smaller arena wins, so the
arena never exceeds the greedy one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..qir import QGraph
from .overlap import Room, output_room

ALIGN = 4
SEARCH_ORDERS = 32  # shuffled placement orders tried besides the four heuristic ones


@dataclass(frozen=True)
class Buffer:
    """One memory region: a tensor and every reshape aliasing it."""

    tensors: tuple[str, ...]  # the first is the root (not a reshape output)
    size: int  # bytes
    first: int  # first live step, inclusive
    last: int  # last live step, inclusive
    home: str  # "arena", "input", "output" or "const"
    index: int  # graph input/output index for home "input"/"output", else -1
    offset: int  # arena byte offset for home "arena", else -1

    @property
    def root(self) -> str:
        return self.tensors[0]

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Plan:
    buffers: tuple[Buffer, ...]
    tensor_buffer: dict[str, int]  # tensor name -> index into buffers
    arena_size: int  # bytes, a multiple of ALIGN
    lower_bound: int  # max over steps of the bytes of live arena buffers
    copies: tuple[tuple[int, str], ...]  # (graph output index, source tensor) done after the run
    # (input buffer, output buffer, rel): the output placed over the input it reads at
    # rel = output offset - input offset, which its kernel (overlap.py) allows
    overlaps: tuple[tuple[int, int, int], ...] = ()
    overlap_bound: int = -1  # the liveness bound with those overlaps counted once; -1: none
    overlap_rooms: tuple[Room, ...] = ()  # per overlaps entry: what its kernel allows

    def buffer(self, tensor: str) -> Buffer:
        return self.buffers[self.tensor_buffer[tensor]]

    def arena_buffers(self) -> list[Buffer]:
        return [b for b in self.buffers if b.home == "arena"]


def align_up(n: int, align: int = ALIGN) -> int:
    return (n + align - 1) // align * align


def tensor_bytes(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def greedy_place(
    sizes: list[int], lifetimes: list[tuple[int, int]], align: int = ALIGN
) -> tuple[list[int], int]:
    """TFLM GreedyMemoryPlanner: largest first, each at the lowest aligned offset free of every
    already-placed buffer that is live at the same time. Returns (offsets, arena size)."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], lifetimes[i][0], i))
    offsets = [-1] * len(sizes)
    placed: list[int] = []
    for i in order:
        first, last = lifetimes[i]
        live = sorted(
            (j for j in placed if lifetimes[j][0] <= last and first <= lifetimes[j][1]),
            key=lambda j: offsets[j],
        )
        candidate = 0
        for j in live:
            if candidate + sizes[i] <= offsets[j]:
                break
            candidate = max(candidate, align_up(offsets[j] + sizes[j], align))
        offsets[i] = candidate
        placed.append(i)
    arena = max((align_up(offsets[i] + sizes[i], align) for i in placed), default=0)
    return offsets, arena


def _pair_ok(a_off: int, a_size: int, b_off: int, b_size: int, room: Room | None) -> bool:
    """May input buffer a and output buffer b (live at one step) sit at these offsets? room
    None: only disjoint; else also where the room allows b_off - a_off."""
    if b_off + b_size <= a_off or a_off + a_size <= b_off:
        return True
    return room is not None and room.allows(b_off - a_off)


def _room_offsets(base: int, room: Room, sign: int, align: int) -> list[int]:
    """Aligned offsets at the edges of a room: for the output over an input at `base` (sign
    +1: offset = base + rel) or for the input under an output at `base` (sign -1: offset =
    base - rel), each interval edge rounded into its interval."""
    out = [base + sign * r for r in room.points]
    if room.below is not None:  # rel <= below
        e = base + sign * room.below
        out.append(e // align * align if sign > 0 else align_up(e, align))
    if room.above is not None:  # rel >= above
        e = base + sign * room.above
        out.append(align_up(e, align) if sign > 0 else e // align * align)
    return out


def pair_span(size_i: int, size_j: int, room: Room) -> int:
    """The fewest bytes input i and output j can span together as the room allows."""
    def span(rel: int) -> int:
        return max(size_i, rel + size_j) - min(0, rel)

    r_lo, r_hi = min(0, size_i - size_j), max(0, size_i - size_j)
    best = size_i + size_j
    if room.below is not None:
        best = min(best, span(min(room.below, r_hi)))
    if room.above is not None:
        best = min(best, span(max(room.above, r_lo)))
    for rel in room.points:
        best = min(best, span(rel))
    return min(best, size_i + size_j)


def overlap_place(
    sizes: list[int],
    lifetimes: list[tuple[int, int]],
    pairs: dict[tuple[int, int], Room],
    order: list[int] | None = None,
    align: int = ALIGN,
) -> tuple[list[int], int]:
    """Greedy placement where buffers live at the same step must be disjoint, except a pair
    (input i, output j) -> room of `pairs`, which may also sit where the room allows. Each buffer
    (largest first unless `order`) goes to the lowest aligned feasible offset: 0 or the right end
    of a forbidden interval. Returns (offsets, arena size)."""
    if order is None:
        order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], lifetimes[i][0], i))
    offsets = [-1] * len(sizes)
    placed: list[int] = []

    def ok(i: int, off: int, k: int) -> bool:
        if (k, i) in pairs:  # k is the input, i the output
            return _pair_ok(offsets[k], sizes[k], off, sizes[i], pairs[(k, i)])
        if (i, k) in pairs:  # i is the input, k the output
            return _pair_ok(off, sizes[i], offsets[k], sizes[k], pairs[(i, k)])
        return _pair_ok(offsets[k], sizes[k], off, sizes[i], None)

    for i in order:
        first, last = lifetimes[i]
        live = [j for j in placed if lifetimes[j][0] <= last and first <= lifetimes[j][1]]
        cands = {0}
        for k in live:
            cands.add(align_up(offsets[k] + sizes[k], align))
            if (i, k) in pairs:  # i is the input of output k: offset_i = offset_k - rel
                cands.update(_room_offsets(offsets[k], pairs[(i, k)], -1, align))
            if (k, i) in pairs:  # i is the output over input k: offset_i = offset_k + rel
                cands.update(_room_offsets(offsets[k], pairs[(k, i)], +1, align))
        cands = {c for c in cands if c >= 0 and c % align == 0} | {0}
        for off in sorted(cands):
            if all(ok(i, off, k) for k in live):
                offsets[i] = off
                break
        placed.append(i)
    arena = max((align_up(offsets[i] + sizes[i], align) for i in placed), default=0)
    return offsets, arena


def overlap_lower_bound(
    sizes: list[int], lifetimes: list[tuple[int, int]], pairs: dict[tuple[int, int], Room]
) -> int:
    """liveness_lower_bound where a pair (i, j) -> room live at one step counts as the fewest
    bytes the two can span where the room allows (pair_span)."""
    steps = {s for lt in lifetimes for s in range(lt[0], lt[1] + 1)}
    best = 0
    for s in steps:
        total = sum(sz for sz, (f, l) in zip(sizes, lifetimes) if f <= s <= l)
        for (i, j), room in pairs.items():
            live = all(lifetimes[k][0] <= s <= lifetimes[k][1] for k in (i, j))
            if live:
                total -= sizes[i] + sizes[j] - pair_span(sizes[i], sizes[j], room)
        best = max(best, total)
    return best


def liveness_lower_bound(sizes: list[int], lifetimes: list[tuple[int, int]]) -> int:
    """Max over steps of the summed sizes of the buffers live at that step."""
    steps = {s for lt in lifetimes for s in range(lt[0], lt[1] + 1)}
    return max(
        (sum(sz for sz, (f, l) in zip(sizes, lifetimes) if f <= s <= l) for s in steps), default=0
    )


def _alias_groups(g: QGraph) -> list[list[str]]:
    """Tensors in order of appearance, grouped by reshape aliasing (root first)."""
    root: dict[str, str] = {}
    order: list[str] = []

    def find(t: str) -> str:
        while root.get(t, t) != t:
            t = root[t]
        return t

    for t in g.inputs:
        if t not in root:
            root[t] = t
            order.append(t)
    for node in g.nodes:
        for t in node.inputs + node.outputs:
            if t not in root:
                root[t] = t
                order.append(t)
        if node.kernel == "reshape":
            root[node.outputs[0]] = find(node.inputs[0])
    groups: dict[str, list[str]] = {}
    for t in order:
        groups.setdefault(find(t), []).append(t)
    return list(groups.values())


def plan_graph(g: QGraph) -> Plan:
    """Lifetimes, homes and arena offsets of every non-weight tensor of `g`."""
    last_step = max(len(g.nodes) - 1, 0)
    first: dict[str, int] = {t: 0 for t in g.inputs}
    last: dict[str, int] = {t: 0 for t in g.inputs}
    for step, node in enumerate(g.nodes):
        for t in node.inputs:
            first.setdefault(t, 0)  # a tensor nobody produces (const) is live from the start
            last[t] = step
        for t in node.outputs:
            first.setdefault(t, step)
            last.setdefault(t, step)
    for t in g.outputs:
        last[t] = last_step

    raw: list[dict] = []
    copies: list[tuple[int, str]] = []
    for tensors in _alias_groups(g):
        home, index = "arena", -1
        if any(g.tensors[t].const is not None for t in tensors):
            home = "const"
        elif any(t in g.inputs for t in tensors):
            home, index = "input", min(g.inputs.index(t) for t in tensors if t in g.inputs)
        out_idx = [k for k, t in enumerate(g.outputs) if t in tensors]
        if out_idx and home == "arena":
            home, index = "output", out_idx[0]
            out_idx = out_idx[1:]
        copies += [(k, g.outputs[k]) for k in out_idx]
        raw.append(
            {
                "tensors": tuple(tensors),
                "size": tensor_bytes(g.tensors[tensors[0]].shape)
                * (2 if g.tensors[tensors[0]].dtype == "int16" else 1),  # bytes by dtype
                "first": min(first[t] for t in tensors),
                "last": max(last[t] for t in tensors),
                "home": home,
                "index": index,
            }
        )

    arena_ids = [i for i, b in enumerate(raw) if b["home"] == "arena"]
    sizes = [raw[i]["size"] for i in arena_ids]
    lifetimes = [(raw[i]["first"], raw[i]["last"]) for i in arena_ids]
    offsets, arena_size = greedy_place(sizes, lifetimes)
    bound = liveness_lower_bound(sizes, lifetimes)
    pairs = _overlap_pairs(g, raw, arena_ids)
    chosen: dict[tuple[int, int], Room] = {}
    overlap_bound = overlap_lower_bound(sizes, lifetimes, pairs) if pairs else -1
    if sizes:
        n = len(sizes)
        orders = [
            None,  # largest first, as greedy_place
            sorted(range(n), key=lambda i: (lifetimes[i][0], -sizes[i], i)),  # by birth
            sorted(range(n), key=lambda i: (-lifetimes[i][0], -sizes[i], i)),  # last born first
            sorted(range(n), key=lambda i: (-sizes[i], -lifetimes[i][0], i)),  # largest, late first
        ]
        # and SEARCH_ORDERS seeded shuffles (deterministic): the greedy placement of one order
        # can leave no room below an input for the output that overlaps it (ic01: 41,036 B with
        # the four orders above, 33,328 B with the shuffles; ad01 264 -> 256 B, its bound)
        rng = np.random.default_rng(n)
        orders += [[int(i) for i in rng.permutation(n)] for _ in range(SEARCH_ORDERS)]
        for order in orders:
            o_offsets, o_arena = overlap_place(sizes, lifetimes, pairs, order)
            if o_arena < arena_size:
                offsets, arena_size = o_offsets, o_arena
                chosen = {
                    (i, j): room
                    for (i, j), room in pairs.items()
                    if not _pair_ok(offsets[i], sizes[i], offsets[j], sizes[j], None)
                }
    offset_of = dict(zip(arena_ids, offsets))
    buffers = tuple(Buffer(offset=offset_of.get(i, -1), **b) for i, b in enumerate(raw))
    tensor_buffer = {t: i for i, b in enumerate(buffers) for t in b.tensors}
    return Plan(
        buffers=buffers,
        tensor_buffer=tensor_buffer,
        arena_size=arena_size,
        lower_bound=bound,
        copies=tuple(sorted(copies)),
        overlaps=tuple(
            (arena_ids[i], arena_ids[j], offsets[j] - offsets[i]) for (i, j) in sorted(chosen)
        ),
        overlap_bound=overlap_bound,
        overlap_rooms=tuple(chosen[k] for k in sorted(chosen)),
    )


def _overlap_pairs(
    g: QGraph, raw: list[dict], arena_ids: list[int]
) -> dict[tuple[int, int], Room]:
    """(input, output) index pairs into arena_ids -> Room, per node: the node's arena output born
    at its step over its largest arena input that dies there and that overlap.output_room allows
    (read by one input slot, or by several that allow the same)."""
    pos = {b: k for k, b in enumerate(arena_ids)}
    buf_of = {t: i for i, b in enumerate(raw) for t in b["tensors"]}
    pairs: dict[tuple[int, int], Room] = {}
    for step, node in enumerate(g.nodes):
        if len(node.outputs) != 1 or buf_of[node.outputs[0]] not in pos:
            continue
        out_b = buf_of[node.outputs[0]]
        if raw[out_b]["first"] != step:
            continue
        best: tuple[int, int, Room] | None = None  # (size, buffer, room)
        for k, t in enumerate(node.inputs):
            b = buf_of.get(t)
            if b is None or b not in pos or b == out_b or raw[b]["last"] != step:
                continue
            rooms = [output_room(g, node, m) for m, u in enumerate(node.inputs)
                     if buf_of.get(u) == b]
            if not rooms[0].any or any(r != rooms[0] for r in rooms):
                continue
            if best is None or raw[b]["size"] > best[0]:
                best = (raw[b]["size"], b, rooms[0])
        if best is not None:
            pairs[(pos[best[1]], pos[out_b])] = best[2]
    return pairs


def check_plan(plan: Plan) -> None:
    """Assert that arena buffers are aligned, inside the arena, and that no two buffers live at
    the same step overlap in memory, except a declared pair (Plan.overlaps) within its lag."""
    arena = plan.arena_buffers()
    rooms = {
        (plan.buffers[i].root, plan.buffers[j].root): room
        for (i, j, _), room in zip(plan.overlaps, plan.overlap_rooms)
    }
    for b in arena:
        assert b.offset % ALIGN == 0, f"{b.root}: offset {b.offset} not {ALIGN}-aligned"
        assert 0 <= b.offset and b.offset + b.size <= plan.arena_size, f"{b.root} outside arena"
    for i, a in enumerate(arena):
        for b in arena[i + 1 :]:
            if a.overlaps_in_time(b):
                disjoint = a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
                if (a.root, b.root) in rooms:
                    disjoint = disjoint or rooms[(a.root, b.root)].allows(b.offset - a.offset)
                elif (b.root, a.root) in rooms:
                    disjoint = disjoint or rooms[(b.root, a.root)].allows(a.offset - b.offset)
                assert disjoint, (
                    f"{a.root} [{a.offset}, +{a.size}) steps {a.first}-{a.last} overlaps "
                    f"{b.root} [{b.offset}, +{b.size}) steps {b.first}-{b.last}"
                )
    if not plan.overlaps:
        assert plan.arena_size >= plan.lower_bound, "arena smaller than the liveness lower bound"
    else:
        assert plan.arena_size >= plan.overlap_bound, "arena below the overlap-aware bound"
