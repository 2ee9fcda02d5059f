"""One cffi marshalling helper for the kernel tests: a qir params dataclass -> its C params
struct (the scalar fields microq.ops derives, the struct the op table names), numpy arrays ->
C pointers kept alive as long as the helper, mq_dims, mq_per_channel_quant and output buffers.

    abi = Abi(clib)                     # clib / clib_single: the conftest (ffi, lib) fixtures
    status = abi.lib.mq_requantize_s8(abi.struct(p), x.size, abi.i8(x), abi.i8(out))
"""

from __future__ import annotations

import numpy as np

from microq import ops

# params dataclass -> its C struct, from the op table (one struct per dataclass)
STRUCTS = {d.params: d.struct for d in ops.KERNELS.values() if d.struct}


class Abi:
    def __init__(self, clib):
        self.ffi, self.lib = clib
        self.keep: list = []  # numpy buffers and cdata the pointers handed out point into

    def struct(self, p, ctype: str | None = None):
        """A new C params struct holding every scalar field of `p` (ops.struct_fields)."""
        ctype = ctype or STRUCTS[type(p)]
        values = {k: getattr(p, k) for k in ops.struct_fields(type(p))}
        s = self.ffi.new(f"{ctype} *", values)
        self.keep.append(s)
        return s

    def _buf(self, ctype: str, dtype, a):
        arr = np.ascontiguousarray(a, dtype=dtype)
        self.keep.append(arr)
        return self.ffi.from_buffer(f"{ctype}[]", arr)

    def i8(self, a):
        """An int8_t pointer into `a` itself when it already is a contiguous int8 array (so an
        output written by C is seen in `a`), else into a contiguous int8 copy."""
        return self._buf("int8_t", np.int8, a)

    def i16(self, a):
        return self._buf("int16_t", np.int16, a)

    def i32(self, a):
        return self._buf("int32_t", np.int32, a)

    def bias(self, b):
        """int32 bias pointer, NULL for None."""
        return self.ffi.NULL if b is None else self.i32(b)

    def quant(self, multiplier, shift):
        """mq_per_channel_quant over int32 copies of multiplier and shift."""
        q = self.ffi.new("mq_per_channel_quant *")
        q.multiplier = self.i32(multiplier)
        q.shift = self.i32(shift)
        self.keep.append(q)
        return q

    def dims(self, shape):
        """mq_dims of a 4-D shape (N, H, W, C)."""
        d = self.ffi.new("mq_dims *", tuple(int(v) for v in shape))
        self.keep.append(d)
        return d

    def bcast(self, shape1, shape2):
        """mq_broadcast of numpy broadcasting shape1 against shape2 (ref.elementwise)."""
        from microq.ref.elementwise import broadcast_struct

        b = self.ffi.new("mq_broadcast *", broadcast_struct(tuple(shape1), tuple(shape2)))
        self.keep.append(b)
        return b

    def weighted(self, p):
        """(params struct, quant, bias pointer or NULL) of a conv / depthwise / transpose conv /
        FC call (ConvParams or FCParams)."""
        return self.struct(p), self.quant(p.multiplier, p.shift), self.bias(p.bias)


def out8(shape, fill: int = 0x5A) -> np.ndarray:
    """An int8 output buffer pre-filled with a marker the kernel must overwrite."""
    return np.full(shape, fill, np.int8)
