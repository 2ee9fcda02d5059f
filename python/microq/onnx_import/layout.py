"""ONNX frontend, step 2 helpers: the IR graph under construction and NCHW->NHWC layout tracking.

Every ONNX tensor maps to a Value: the physical IR tensor holding it and the perm with
physical = logical.transpose(perm). Layout-sensitive converters map axes through the perm or ask
for another layout; a Transpose that does not move memory becomes a free Reshape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from microq import ir

NHWC = (0, 2, 3, 1)  # physical NHWC from logical NCHW
NLC = (0, 2, 1)  # Conv1D: physical [N, L, C] from logical [N, C, L]


@dataclass(frozen=True)
class Value:
    name: str  # the physical IR tensor
    perm: tuple[int, ...]  # physical = logical.transpose(perm)


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
        """The same data in layout `target` (a Transpose, or a free Reshape when memory agrees)."""
        if v.perm == target:
            return v
        step = compose(inverse(v.perm), target)  # current physical -> target physical
        phys = self.shape(v.name)
        out_shape = permute(logical, target)
        suffix = "nchw" if target == identity(len(target)) else "t"
        if is_noop(phys, step):
            return Value(self.reshape(v.name, out_shape, f"{v.name}__{suffix}", source), target)
        attrs = ir.TransposeAttrs(step)
        out = self.add("Transpose", [v.name], f"{v.name}__{suffix}", out_shape, attrs,
                       source=source)
        return Value(out, target)

    def to_logical(self, v: Value, logical: tuple[int, ...], source: list[str]) -> Value:
        return self.to_perm(v, logical, identity(len(logical)), source)

    def rename(self, old: str, new: str) -> None:
        """Give tensor `old` the name `new` everywhere (used for graph outputs)."""
        t = self.tensors.pop(old)
        self.tensors[new] = ir.Tensor(new, t.shape, t.const)
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
            n.outputs = [new if o == old else o for o in n.outputs]
