"""ONNX frontend, step 2 helpers: the IR graph under construction and NCHW->NHWC layout tracking.

Every ONNX tensor maps to a Value: the physical IR tensor holding it and the perm with
physical = logical.transpose(perm). Layout-sensitive converters map axes through the perm or ask
for another layout; a Transpose that does not move memory becomes a free Reshape.

The sample axis. The IR describes one sample (batch 1), but the float executor runs N samples at
once stacked along *physical axis 0*, so physical axis 0 of every activation is a size-1 axis no
node computes across. Which logical axis sits there is free: for a plain Value it is
logical axis perm[0], which has size 1 (the model's batch axis while it is known, else any other
size-1 axis: moving size-1 axes is free in memory). A Value with `hidden=True` has no logical
axis for it: its IR tensor is [1] + logical.transpose(perm) (after a Reshape merged the batch
into a data axis, e.g. nn.MultiheadAttention's [T, B*H, D]). Converters get plain Values from
Ctx.value() (hidden ones are turned plain when a size-1 axis exists); one that handles hidden
Values asks for them with Ctx.value(idx, hidden=True) and keeps the flag on its outputs.
Where the *model's* batch axis is (what mixing samples means) is tracked apart, in Ctx.batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from microq import ir
from microq.ops import check_node

NHWC = (0, 2, 3, 1)  # physical NHWC from logical NCHW
NLC = (0, 2, 1)  # Conv1D: physical [N, L, C] from logical [N, C, L]


class LayoutError(Exception):
    """A layout the sample axis forbids; converters report it like Unsupported."""


@dataclass(frozen=True)
class Value:
    name: str  # the physical IR tensor
    perm: tuple[int, ...]  # physical = logical.transpose(perm) (after the leading 1 if hidden)
    hidden: bool = False  # the IR tensor has an extra leading size-1 sample axis

    def phys(self, logical: tuple[int, ...]) -> tuple[int, ...]:
        """The IR shape of this Value for the logical shape `logical`."""
        return ((1,) if self.hidden else ()) + permute(logical, self.perm)

    def phys_axis(self, axis: int) -> int:
        """The IR axis that holds logical axis `axis`."""
        return self.perm.index(axis) + (1 if self.hidden else 0)


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def compose(first: tuple[int, ...], then: tuple[int, ...]) -> tuple[int, ...]:
    """x.transpose(first).transpose(then) == x.transpose(compose(first, then))."""
    return tuple(first[i] for i in then)


def inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def permute(shape: tuple[int, ...], perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[p] for p in perm)


def is_noop(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """True when transposing `shape` by `perm` keeps the bytes in place (size-1 dims are free)."""
    moved = [p for p in perm if shape[p] > 1]
    return moved == sorted(moved)


def const_to_physical(arr: np.ndarray, rank: int, perm: tuple[int, ...]) -> np.ndarray:
    """A logical constant broadcast against a rank-`rank` activation, in the activation's layout.

    Leading size-1 dims are dropped afterwards: numpy broadcasting gives the same result and a
    per-channel constant of an NHWC activation becomes a plain [C] vector.
    """
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim > rank:
        raise ValueError("constant has more dims than the activation")
    arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape).transpose(perm)
    while arr.ndim > 1 and arr.shape[0] == 1:
        arr = arr[0]
    return np.ascontiguousarray(arr)


@dataclass
class Builder:
    """Accumulates IR tensors and nodes with unique names."""

    tensors: dict[str, ir.Tensor] = field(default_factory=dict)
    nodes: list[ir.Node] = field(default_factory=list)
    node_names: set[str] = field(default_factory=set)

    def tensor_name(self, preferred: str) -> str:
        name, i = preferred, 1
        while name in self.tensors:
            name, i = f"{preferred}_{i}", i + 1
        return name

    def node_name(self, preferred: str) -> str:
        name, i = preferred, 1
        while name in self.node_names:
            name, i = f"{preferred}_{i}", i + 1
        self.node_names.add(name)
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def activation(self, name: str, shape: tuple[int, ...]) -> str:
        name = self.tensor_name(name)
        self.tensors[name] = ir.Tensor(name, tuple(int(d) for d in shape))
        return name

    def const(self, name: str, arr: np.ndarray) -> str:
        arr = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
        name = self.tensor_name(name)
        self.tensors[name] = ir.Tensor(name, arr.shape, arr)
        return name

    def add(
        self,
        op: str,
        inputs: list[str],
        out: str,
        out_shape: tuple[int, ...],
        attrs: object = None,
        node: str = "",
        source: list[str] | None = None,
    ) -> str:
        """Append a node producing a new tensor named like `out` (made unique); return its name."""
        check_node(f"node '{node or out}'", op, attrs)  # an op and attrs of microq.ops.OPS
        out = self.activation(out, out_shape)
        name = self.node_name(node or out)
        self.nodes.append(ir.Node(name, op, list(inputs), [out], attrs, list(source or [])))
        return out

    def reshape(self, src: str, shape: tuple[int, ...], out: str, source: list[str]) -> str:
        if tuple(shape) == self.shape(src):
            return src
        attrs = ir.ReshapeAttrs(tuple(int(d) for d in shape))
        return self.add("Reshape", [src], out, shape, attrs, source=source)

    def to_perm(
        self, v: Value, logical: tuple[int, ...], target: tuple[int, ...], source: list[str]
    ) -> Value:
        """The same data in layout `target` (a Transpose, or a free Reshape when memory agrees).

        A plain Value whose target puts another logical axis first needs that axis to have
        size 1 (it becomes the sample axis); a hidden Value stays hidden, its leading 1 first."""
        if v.perm == target:
            return v
        if not v.hidden and target[0] != v.perm[0]:
            if logical[target[0]] != 1:
                raise LayoutError(
                    f"layout {list(target)} of a {list(logical)} tensor would move the sample "
                    f"axis (logical axis {v.perm[0]}) off the front")
            v = self.rehome(v, logical, target[0], source)
            if v.perm == target:
                return v
        step = compose(inverse(v.perm), target)  # current physical -> target physical
        lead = 1 if v.hidden else 0
        if lead:
            step = (0,) + tuple(p + 1 for p in step)
        phys = self.shape(v.name)
        out_shape = ((1,) if v.hidden else ()) + permute(logical, target)
        suffix = "nchw" if target == identity(len(target)) else "t"
        if is_noop(phys, step):
            return Value(self.reshape(v.name, out_shape, f"{v.name}__{suffix}", source), target,
                         v.hidden)
        attrs = ir.TransposeAttrs(step)
        out = self.add("Transpose", [v.name], f"{v.name}__{suffix}", out_shape, attrs,
                       source=source)
        return Value(out, target, v.hidden)

    def to_logical(self, v: Value, logical: tuple[int, ...], source: list[str]) -> Value:
        """Row-major logical order. A plain Value whose sample axis is not logical axis 0 and
        logical axis 0 is not size 1 cannot have it (LayoutError): use to_row_major."""
        return self.to_perm(v, logical, identity(len(logical)), source)

    def to_row_major(self, v: Value, logical: tuple[int, ...], source: list[str]) -> Value:
        """The logical data in row-major order in memory, the sample axis kept first: identity
        perm when possible, else the sample axis (size 1) first and the rest in order (the
        same bytes in a batch-1 model). What a Reshape needs."""
        if v.hidden:
            return self.to_perm(v, logical, identity(len(logical)), source)
        s = v.perm[0]
        if s == 0 or logical[0] == 1:
            return self.to_perm(v, logical, identity(len(logical)), source)
        return self.to_perm(v, logical, (s,) + tuple(i for i in range(len(logical)) if i != s),
                            source)

    def rehome(self, v: Value, logical: tuple[int, ...], axis: int, source: list[str]) -> Value:
        """Make size-1 logical `axis` the sample axis (a free Reshape; hidden Values too)."""
        if not v.hidden and v.perm[0] == axis:
            return v
        rest = tuple(p for p in v.perm if p != axis)
        perm = (axis,) + rest
        out = self.reshape(v.name, permute(logical, perm), f"{v.name}__s", source)
        return Value(out, perm)

    def hide(self, v: Value, logical: tuple[int, ...], source: list[str]) -> Value:
        """The same data as a hidden Value (a free Reshape adding the leading 1)."""
        if v.hidden:
            return v
        out = self.reshape(v.name, (1,) + permute(logical, v.perm), f"{v.name}__h", source)
        return Value(out, v.perm, True)

    def unhide(self, v: Value, logical: tuple[int, ...], source: list[str],
               avoid: tuple[int, ...] = ()) -> Value:
        """A hidden Value as a plain one when a size-1 logical axis (not in `avoid`) can hold
        the sample; else unchanged."""
        if not v.hidden:
            return v
        ones = [p for p in v.perm if logical[p] == 1 and p not in avoid]
        return self.rehome(v, logical, ones[0], source) if ones else v

    def rename(self, old: str, new: str) -> None:
        """Give tensor `old` the name `new` everywhere (used for graph outputs)."""
        t = self.tensors.pop(old)
        self.tensors[new] = ir.Tensor(new, t.shape, t.const)
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
            n.outputs = [new if o == old else o for o in n.outputs]
