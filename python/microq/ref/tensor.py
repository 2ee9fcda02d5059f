"""Integer reference of the data movement kernels (c_runtime/src/mq_tensor.c): concat, pad,
transpose; plus the [outer, axis, inner] view codegen passes to mq_concat_s8."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..qir import ConcatParams, PadParams, TransposeParams


def concat_dims(shapes: Sequence[Sequence[int]], axis: int) -> tuple[int, list[int], int]:
    """(outer, axis_sizes, inner) of a concatenation of tensors of these shapes on `axis`."""
    rank = len(shapes[0])
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ValueError(f"concat axis {axis} out of range for rank {rank}")
    for s in shapes:
        if len(s) != rank or any(s[d] != shapes[0][d] for d in range(rank) if d != axis):
            raise ValueError(f"concat shapes {list(shapes)} differ off axis {axis}")
    outer = int(np.prod(shapes[0][:axis], dtype=np.int64))
    inner = int(np.prod(shapes[0][axis + 1 :], dtype=np.int64))
    return outer, [int(s[axis]) for s in shapes], inner


def concat(p: ConcatParams, xs: list) -> np.ndarray:
    """Concatenate int8 tensors on p.axis: each output row [axis_total * inner] is the inputs'
    rows [axis_sizes[i] * inner] laid end to end, as the C kernel copies them."""
    xs = [np.asarray(x, np.int8) for x in xs]
    outer, axis_sizes, inner = concat_dims([x.shape for x in xs], p.axis)
    rows = [x.reshape(outer, size * inner) for x, size in zip(xs, axis_sizes)]
    out_shape = list(xs[0].shape)
    out_shape[p.axis] = sum(axis_sizes)
    return np.concatenate(rows, axis=1).reshape(out_shape)


def pad(p: PadParams, x) -> np.ndarray:
    """Constant pad of a 4-D int8 tensor: p.pre / p.post elements before / after on each axis."""
    x = np.asarray(x, np.int8)
    if x.ndim != 4 or len(p.pre) != 4 or len(p.post) != 4 or min(*p.pre, *p.post) < 0:
        raise ValueError(f"pad needs a 4-D input and 4 non-negative pads, got {x.shape}, {p}")
    out_shape = tuple(pre + n + post for pre, n, post in zip(p.pre, x.shape, p.post))
    out = np.full(out_shape, p.pad_value, dtype=np.int8)
    out[tuple(slice(pre, pre + n) for pre, n in zip(p.pre, x.shape))] = x
    return out


def transpose(p: TransposeParams, x) -> np.ndarray:
    """numpy.transpose: output axis i is input axis p.perm[i]."""
    x = np.asarray(x, np.int8)
    if sorted(p.perm) != list(range(x.ndim)):
        raise ValueError(f"perm {p.perm} is not a permutation of the {x.ndim} input axes")
    return np.ascontiguousarray(np.transpose(x, p.perm))
