"""ONNX frontend, step 2 state: what a converter sees (ONNX node, constants, values, builder)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from microq.onnx_import.layout import Builder, LayoutError, Value, identity, inverse, permute
from microq.onnx_import.loader import Prepared

__all__ = ["Ctx", "Unsupported", "LayoutError", "Value"]


class Unsupported(Exception):
    """Raised by a converter; the message is the reason shown to the user."""


def mixes_samples(what: str, axis: int, merged: bool = False) -> Unsupported:
    where = (f"axis {axis}, into which a Reshape merged the batch," if merged
             else f"the batch axis (axis {axis})")
    does = ("divides the batch into groups of samples" if what == "Split" and not merged
            else "mixes the samples of a batch")  # a split separates samples, never mixes them
    return Unsupported(f"{what} along {where} {does}; microq compiles one sample at a time")


@dataclass
class Ctx:
    prep: Prepared
    b: Builder = field(default_factory=Builder)
    values: dict[str, Value] = field(default_factory=dict)  # ONNX tensor -> physical IR tensor
    node: onnx.NodeProto | None = None
    name: str = ""  # the current ONNX node's unique name
    merged: dict[str, list[str]] = field(default_factory=dict)  # pattern node -> ONNX nodes
    # ONNX tensor -> the logical axis that is the model's batch, None once a Reshape merged or
    # dropped it. A converter that moves axes sets it (set_batch); otherwise convert() copies
    # input 0's when the ranks agree.
    batch: dict[str, int | None] = field(default_factory=dict)
    # ONNX tensor -> the axis a Reshape/Flatten merged the batch into (e.g. [T, B*H, D]): an op
    # along that axis mixes samples too. Kept by Transpose, Reshapes that keep the axis, and
    # (by convert()) same-rank ops; a Reshape that splits it back gives the batch its own axis.
    batch_merged: dict[str, int] = field(default_factory=dict)

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
            phys = self.b.shape(v.name)
            return permute(phys[1:] if v.hidden else phys, inverse(v.perm))
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

    def value(self, idx: int, hidden: bool = False) -> Value:
        """Input `idx` as an activation; a constant input becomes an IR constant tensor.

        A hidden Value (see layout) is made plain when it has a size-1 axis; a converter that
        can take it hidden passes hidden=True, else a still-hidden Value is Unsupported."""
        name = self.node.input[idx]
        if name in self.values:
            v = self.values[name]
            if v.hidden and not hidden:
                v = self.b.unhide(v, self.shape(name), self.source)
                if v.hidden:
                    raise self.no_sample_axis(name)
                self.values[name] = v
            return v
        if name in self.prep.consts:
            arr = self.prep.consts[name]
            if arr.dtype.kind != "f":
                raise Unsupported(f"non-float constant input '{name}'")
            v = Value(self.b.const(name, arr), identity(arr.ndim))
            self.values[name] = v
            return v
        raise Unsupported(f"input '{name}' has no producer")

    def no_sample_axis(self, name: str) -> Unsupported:
        """The refusal for an op that needs a size-1 (batch) axis on a tensor that has none:
        says which rule left it without one."""
        from microq.onnx_import.loader import unbatched_note

        what = f"{self.node.op_type} of '{name}' {list(self.shape(name))}"
        if self.prep.unbatched and self.merged_of_name(name) is None:
            return Unsupported(
                f"{what}: {unbatched_note(self.prep)}, which microq reads as data (a static "
                f"dim 0 > 1 is not a batch), so this tensor has no batch axis and "
                f"{self.node.op_type} is supported here only with one; export the model with "
                "a batch of 1 or a dynamic batch")
        return Unsupported(f"{what}, whose batch axis an earlier Reshape merged into a data "
                           "axis, is not supported")

    def merged_of_name(self, name: str) -> int | None:
        return self.batch_merged.get(name)

    def is_const(self, idx: int) -> bool:
        return self.const(idx) is not None

    def out(self, idx: int = 0) -> str:
        return self.node.output[idx]

    def set(self, ir_name: str, perm: tuple[int, ...], idx: int = 0, hidden: bool = False) -> None:
        self.values[self.node.output[idx]] = Value(ir_name, tuple(perm), hidden)

    def batch_of(self, idx: int) -> int | None:
        """The model's batch axis in input `idx` (None: merged or dropped, or a constant)."""
        return self.batch.get(self.node.input[idx]) if self.has_input(idx) else None

    def set_batch(self, axis: int | None, idx: int = 0, merged: int | None = None) -> None:
        self.batch[self.node.output[idx]] = axis
        if merged is not None:
            self.batch_merged[self.node.output[idx]] = merged
        else:
            self.batch_merged.pop(self.node.output[idx], None)

    def merged_of(self, idx: int) -> int | None:
        return self.batch_merged.get(self.node.input[idx]) if self.has_input(idx) else None

    def check_samples(self, what: str, axes, idx: int = 0) -> None:
        """Raise mixes_samples when an op over logical `axes` of input `idx` would combine
        samples: the batch axis, or the axis the batch was merged into."""
        for ax in axes:
            if ax == self.batch_of(idx) or ax == self.merged_of(idx):
                raise mixes_samples(what, ax, ax != self.batch_of(idx))

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
