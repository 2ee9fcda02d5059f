"""Structural checks of an int8 TFLite graph before it is lowered: nothing read from the file
reaches the generated C unless it is consistent.

The C kernels trust their shapes: a conv writes N*OH*OW*Cout bytes computed from its input,
filter and stride, and the arena is planned from the tensors' declared shapes. So every
operator's declared output shape must equal what the kernel computes from its inputs and
options, every input must have the shape the kernel reads, and the graph must be a DAG whose
activations are each written by exactly one operator before they are read. A crafted file that
breaks any of this would make the C write past the arena; here it is a one-line MicroqError
naming the operator and tensor.
"""

from __future__ import annotations

import numpy as np

from ..errors import MicroqError
from .reader import TfModel, TfOp

MAX_WINDOW = 2**16  # strides, dilations and pool windows beyond this are corrupt options
MAX_DIMS = 6  # MQ_MAX_DIMS of the C runtime
_SAME, _VALID = 0, 1

# opcode -> (required inputs, optional inputs that may be -1, outputs)
_ARITY = {
    "CONV_2D": (2, 1, 1),
    "DEPTHWISE_CONV_2D": (2, 1, 1),
    "FULLY_CONNECTED": (2, 1, 1),
    "AVERAGE_POOL_2D": (1, 0, 1),
    "MAX_POOL_2D": (1, 0, 1),
    "ADD": (2, 0, 1),
    "SUB": (2, 0, 1),
    "MUL": (2, 0, 1),
    "SOFTMAX": (1, 0, 1),
    "RESHAPE": (1, 1, 1),  # the new shape as a second (constant) input is optional
    "QUANTIZE": (1, 0, 1),
    "STRIDED_SLICE": (4, 0, 1),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (24, 0, 1),  # omitted ones (-1) are checked when lowered
    "LOGISTIC": (1, 0, 1),
    "TANH": (1, 0, 1),
    "REVERSE_V2": (2, 0, 1),
    "CONCATENATION": (1, 1023, 1),
}
LSTM_STATE_INPUTS = (18, 19)  # the hidden (output) state and the cell state: variables


class _Checker:
    def __init__(self, m: TfModel):
        self.m = m

    def fail(self, op: TfOp, why: str):
        raise MicroqError(f"{self.m.path}: {op.name} ({op.opcode}): {why}")

    def shape(self, idx: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.m.tensors[idx].shape)

    def name(self, idx: int) -> str:
        return self.m.tensors[idx].name or f"tensor{idx}"

    def expect(self, op: TfOp, idx: int, role: str, want: tuple[int, ...], why: str = ""):
        got = self.shape(idx)
        if got != tuple(want):
            self.fail(op, f"{role} tensor '{self.name(idx)}' has shape {list(got)}, but "
                      f"{why or 'the operator computes'} {list(want)}: the file is corrupt")

    def rank(self, op: TfOp, idx: int, role: str, ranks: tuple[int, ...]):
        r = len(self.shape(idx))
        if r not in ranks:
            self.fail(op, f"{role} tensor '{self.name(idx)}' has rank {r} "
                      f"{list(self.shape(idx))}, expected {' or '.join(map(str, ranks))}")

    def option(self, op: TfOp, what: str, v: int, lo: int = 1, hi: int = MAX_WINDOW) -> int:
        if not lo <= int(v) <= hi:
            self.fail(op, f"option {what}={v} is outside [{lo}, {hi}]: the file is corrupt")
        return int(v)

    def padding(self, op: TfOp, v: int) -> int:
        if v not in (_SAME, _VALID):
            self.fail(op, f"option padding={v} is neither SAME (0) nor VALID (1)")
        return int(v)

    # -- per operator ---------------------------------------------------------------------
    def arity(self, op: TfOp) -> None:
        req, opt, n_out = _ARITY[op.opcode]
        ins = op.inputs
        if len(ins) < req or len(ins) > req + opt or len(op.outputs) != n_out:
            self.fail(op, f"has {len(ins)} inputs and {len(op.outputs)} outputs, expected "
                      f"{req}{f'..{req + opt}' if opt else ''} and {n_out}")
        for k, i in enumerate(ins[:req]):
            if i < 0 and op.opcode != "UNIDIRECTIONAL_SEQUENCE_LSTM":
                self.fail(op, f"required input {k} is omitted (tensor index {i})")

    def conv(self, op: TfOp) -> None:
        from .lower import compute_out_size

        depthwise = op.opcode == "DEPTHWISE_CONV_2D"
        x, f, y = op.inputs[0], op.inputs[1], op.outputs[0]
        for idx, role in ((x, "input"), (f, "filter"), (y, "output")):
            self.rank(op, idx, role, (4,))
        n, h, w, cin = self.shape(x)
        fo, kh, kw, fi = self.shape(f)
        o = op.options
        if o is None:
            self.fail(op, "its options (stride, padding, ...) are missing from the file")
        sh, sw = self.option(op, "stride_h", o.StrideH()), self.option(op, "stride_w", o.StrideW())
        dh = self.option(op, "dilation_h_factor", o.DilationHFactor())
        dw = self.option(op, "dilation_w_factor", o.DilationWFactor())
        pad = self.padding(op, o.Padding())
        if depthwise:
            if fo != 1:
                self.fail(op, f"filter {list(self.shape(f))} must be [1, KH, KW, Cout]")
            cout = fi
            if cout % cin:
                self.fail(op, f"{cout} output channels are not a multiple of {cin} input "
                          "channels")
        else:
            cout = fo
            if fi != cin:
                self.fail(op, f"filter {list(self.shape(f))} reads {fi} channels, the input "
                          f"'{self.name(x)}' has {cin}")
        oh, ow = (compute_out_size(pad, size, k, s, d)
                  for size, k, s, d in ((h, kh, sh, dh), (w, kw, sw, dw)))
        if oh < 1 or ow < 1:
            self.fail(op, f"the {kh}x{kw} filter (dilation {dh}x{dw}) does not fit the input "
                      f"{h}x{w}")
        self.expect(op, y, "output", (n, oh, ow, cout))
        self.bias(op, cout)

    def bias(self, op: TfOp, channels: int) -> None:
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            b = op.inputs[2]
            if int(np.prod(self.shape(b), dtype=object)) != channels:
                self.fail(op, f"bias tensor '{self.name(b)}' {list(self.shape(b))} does not "
                          f"have {channels} values")

    def fully_connected(self, op: TfOp) -> None:
        x, f, y = op.inputs[0], op.inputs[1], op.outputs[0]
        self.rank(op, f, "weight", (2,))
        n_out, n_in = self.shape(f)
        size = int(np.prod(self.shape(x), dtype=object))
        if size % n_in:
            self.fail(op, f"input '{self.name(x)}' {list(self.shape(x))} does not split into "
                      f"rows of {n_in}")
        rows = size // n_in
        got = self.shape(y)
        if not got or got[-1] != n_out or int(np.prod(got, dtype=object)) != rows * n_out:
            self.fail(op, f"output tensor '{self.name(y)}' has shape {list(got)}, but the "
                      f"operator computes {rows} rows of {n_out}: the file is corrupt")
        self.bias(op, n_out)

    def pool(self, op: TfOp) -> None:
        from .lower import compute_out_size

        x, y = op.inputs[0], op.outputs[0]
        self.rank(op, x, "input", (4,))
        self.rank(op, y, "output", (4,))
        o = op.options
        if o is None:
            self.fail(op, "its options (filter, stride, padding) are missing from the file")
        kh = self.option(op, "filter_height", o.FilterHeight())
        kw = self.option(op, "filter_width", o.FilterWidth())
        sh, sw = self.option(op, "stride_h", o.StrideH()), self.option(op, "stride_w", o.StrideW())
        pad = self.padding(op, o.Padding())
        n, h, w, c = self.shape(x)
        oh, ow = compute_out_size(pad, h, kh, sh, 1), compute_out_size(pad, w, kw, sw, 1)
        if oh < 1 or ow < 1:
            self.fail(op, f"the {kh}x{kw} window does not fit the input {h}x{w}")
        self.expect(op, y, "output", (n, oh, ow, c))

    def binary(self, op: TfOp) -> None:
        a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
        try:
            want = tuple(np.broadcast_shapes(self.shape(a), self.shape(b)))
        except ValueError:
            self.fail(op, f"inputs {list(self.shape(a))} and {list(self.shape(b))} do not "
                      "broadcast")
        if len(want) > MAX_DIMS:
            self.fail(op, f"rank {len(want)} is above the C runtime's {MAX_DIMS}")
        self.expect(op, y, "output", want, "broadcasting the inputs gives")

    def same_shape(self, op: TfOp) -> None:
        x, y = op.inputs[0], op.outputs[0]
        if not self.shape(x):
            self.fail(op, f"input '{self.name(x)}' is a scalar")
        self.expect(op, y, "output", self.shape(x), "the input has")

    def softmax(self, op: TfOp) -> None:
        self.same_shape(op)
        beta = float(op.options.Beta()) if op.options is not None else 1.0
        if not (beta > 0 and np.isfinite(beta)):
            self.fail(op, f"option beta={beta!r}; expected a positive finite beta")

    def reshape(self, op: TfOp) -> None:
        x, y = op.inputs[0], op.outputs[0]
        if np.prod(self.shape(x), dtype=object) != np.prod(self.shape(y), dtype=object):
            self.fail(op, f"reshape of '{self.name(x)}' {list(self.shape(x))} to "
                      f"'{self.name(y)}' {list(self.shape(y))} changes the element count")

    def dataflow(self, ops: list[TfOp], inputs: list[int], outputs: list[int]) -> None:
        """A DAG in file order: every activation an operator reads is a graph input or written
        before by exactly one operator; no operator writes a constant or a graph input."""
        ready = set(inputs)
        for op in ops:
            for k, i in enumerate(op.inputs):
                if i < 0 or self.m.tensors[i].data is not None:
                    continue
                if self.m.tensors[i].is_variable:  # state: only an LSTM's, and read there
                    if op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM" and k in LSTM_STATE_INPUTS:
                        continue
                    self.fail(op, f"input {k} '{self.name(i)}' is a variable (state) tensor; "
                              "microq supports those only as an LSTM's hidden / cell state")
                if i not in ready:
                    self.fail(op, f"input {k} '{self.name(i)}' is not a graph input and no "
                              "earlier operator writes it")
            for i in op.outputs:
                if self.m.tensors[i].is_variable:
                    self.fail(op, f"output '{self.name(i)}' is a variable (state) tensor")
                if self.m.tensors[i].data is not None or i in ready:
                    what = "a constant" if self.m.tensors[i].data is not None else \
                        "already written (by a graph input or an earlier operator)"
                    self.fail(op, f"output '{self.name(i)}' is {what}")
                if i in op.inputs:
                    self.fail(op, f"output '{self.name(i)}' is also its input")
                ready.add(i)
        for i in outputs:
            if i not in ready:
                raise MicroqError(f"{self.m.path}: graph output '{self.name(i)}' is not "
                                  "computed by any operator")


_BY_OPCODE = {
    "CONV_2D": _Checker.conv,
    "DEPTHWISE_CONV_2D": _Checker.conv,
    "FULLY_CONNECTED": _Checker.fully_connected,
    "AVERAGE_POOL_2D": _Checker.pool,
    "MAX_POOL_2D": _Checker.pool,
    "ADD": _Checker.binary,
    "SUB": _Checker.binary,
    "MUL": _Checker.binary,
    "SOFTMAX": _Checker.softmax,
    "QUANTIZE": _Checker.same_shape,
    "RESHAPE": _Checker.reshape,
    "LOGISTIC": _Checker.same_shape,
    "TANH": _Checker.same_shape,
}


def check_graph(m: TfModel, ops: list[TfOp], inputs: list[int], outputs: list[int]) -> None:
    """Raise a MicroqError for the first inconsistency of the ops to lower (see module doc)."""
    c = _Checker(m)
    for op in ops:
        if op.opcode in _ARITY:
            c.arity(op)
            if op.opcode in _BY_OPCODE:  # the others check their shapes while lowered
                _BY_OPCODE[op.opcode](c, op)
    c.dataflow(ops, inputs, outputs)
