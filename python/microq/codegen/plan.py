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
a kernel's inputs and output never share memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..qir import QGraph

ALIGN = 4


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
                "size": tensor_bytes(g.tensors[tensors[0]].shape),
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
    offset_of = dict(zip(arena_ids, offsets))
    buffers = tuple(Buffer(offset=offset_of.get(i, -1), **b) for i, b in enumerate(raw))
    tensor_buffer = {t: i for i, b in enumerate(buffers) for t in b.tensors}
    return Plan(
        buffers=buffers,
        tensor_buffer=tensor_buffer,
        arena_size=arena_size,
        lower_bound=liveness_lower_bound(sizes, lifetimes),
        copies=tuple(sorted(copies)),
    )


def check_plan(plan: Plan) -> None:
    """Assert that arena buffers are aligned, inside the arena, and that no two buffers live at
    the same step overlap in memory."""
    arena = plan.arena_buffers()
    for b in arena:
        assert b.offset % ALIGN == 0, f"{b.root}: offset {b.offset} not {ALIGN}-aligned"
        assert 0 <= b.offset and b.offset + b.size <= plan.arena_size, f"{b.root} outside arena"
    for i, a in enumerate(arena):
        for b in arena[i + 1 :]:
            if a.overlaps_in_time(b):
                disjoint = a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
                assert disjoint, (
                    f"{a.root} [{a.offset}, +{a.size}) steps {a.first}-{a.last} overlaps "
                    f"{b.root} [{b.offset}, +{b.size}) steps {b.first}-{b.last}"
                )
    assert plan.arena_size >= plan.lower_bound, "arena smaller than the liveness lower bound"
