"""ONNX frontend, step 2 state: what a converter sees (ONNX node, constants, values, builder)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from microq.onnx_import.layout import Builder, Value, identity, inverse, permute
from microq.onnx_import.loader import Prepared


class Unsupported(Exception):
    """Raised by a converter; the message is the reason shown to the user."""


@dataclass
class Ctx:
    prep: Prepared
    b: Builder = field(default_factory=Builder)
    values: dict[str, Value] = field(default_factory=dict)  # ONNX tensor -> physical IR tensor
    node: onnx.NodeProto | None = None
    name: str = ""  # the current ONNX node's unique name
    merged: dict[str, list[str]] = field(default_factory=dict)  # pattern node -> ONNX nodes

    @property
    def opset(self) -> int:
        return self.prep.opset

    @property
    def source(self) -> list[str]:
        return list(self.merged.get(self.name, [self.name]))

    def attrs(self) -> dict[str, object]:
        return {a.name: helper.get_attribute_value(a) for a in self.node.attribute}

    def shape(self, name: str) -> tuple[int, ...]:
        """Logical (ONNX) shape of a tensor; an unknown shape makes the node unsupported."""
        if name in self.prep.consts:
            return tuple(self.prep.consts[name].shape)
        # The IR first: it holds what the kernels compute, where ONNX shape inference may not
        # know the op or disagree with onnxruntime (MaxPool ceil_mode whose last window would
        # start in the right padding: onnxruntime drops it, onnx 1.23's inference keeps it).
        if name in self.values:
            v = self.values[name]
            return permute(self.b.shape(v.name), inverse(v.perm))
        if name in self.prep.shapes:
            return self.prep.shapes[name]
        raise Unsupported(f"the shape of '{name}' is not static after shape inference")

    def const(self, idx: int) -> np.ndarray | None:
        """Input `idx` of the current node if it is a constant, else None (also when absent)."""
        ins = self.node.input
        if idx >= len(ins) or not ins[idx]:
            return None
        return self.prep.consts.get(ins[idx])

    def has_input(self, idx: int) -> bool:
        return idx < len(self.node.input) and bool(self.node.input[idx])

    def value(self, idx: int) -> Value:
        """Input `idx` as an activation; a constant input becomes an IR constant tensor."""
        name = self.node.input[idx]
        if name in self.values:
            return self.values[name]
        if name in self.prep.consts:
            arr = self.prep.consts[name]
            if arr.dtype.kind != "f":
                raise Unsupported(f"non-float constant input '{name}'")
            v = Value(self.b.const(name, arr), identity(arr.ndim))
            self.values[name] = v
            return v
        raise Unsupported(f"input '{name}' has no producer")

    def is_const(self, idx: int) -> bool:
        return self.const(idx) is not None

    def out(self, idx: int = 0) -> str:
        return self.node.output[idx]

    def set(self, ir_name: str, perm: tuple[int, ...], idx: int = 0) -> None:
        self.values[self.node.output[idx]] = Value(ir_name, tuple(perm))

    def unused(self, idx: int) -> bool:
        """True when optional output `idx` is absent or consumed by nobody."""
        if idx >= len(self.node.output) or not self.node.output[idx]:
            return True
        name = self.node.output[idx]
        graph_outs = {o.name for o in self.prep.model.graph.output}
        return name not in graph_outs and all(name not in n.input for n in self.prep.nodes)


def axis_of(value: object, rank: int, what: str = "axis") -> int:
    """An ONNX axis attribute/input in [-rank, rank) as 0..rank-1; anything else is an invalid
    model (never Python's wrap-around: axis 5 of a rank-3 tensor is not axis 2)."""
    ax = int(value)  # type: ignore[call-overload]
    if not -rank <= ax < rank:
        raise Unsupported(f"{what}={ax} is out of range for a rank-{rank} input: the model is "
                          "invalid")
    return ax % rank
