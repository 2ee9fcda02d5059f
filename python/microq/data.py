"""Loading and validating user data files (.npz keyed by input name, or .npy for one input)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import MicroqError


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read an .npz (all keys) or .npy (key None) file, with a one-line error on failure."""
    p = Path(path)
    if not p.is_file():
        raise MicroqError(f"{p}: no such data file")
    try:
        if p.suffix == ".npy":
            return {"": np.load(p, allow_pickle=False)}
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        why = str(e).split(". ")[0] if str(e).strip() else type(e).__name__
        if "pickle" in str(e):  # numpy's text suggests loading it unsafely: never
            why = "numpy could read it only as a pickle, which microq never loads"
        raise MicroqError(f"{p}: not a readable .npz/.npy file ({why})") from None


def sample_shape(shape) -> tuple[int, ...]:
    """One sample of an input of logical (ONNX) shape `shape`, as the arrays (N, *sample) hold
    it: without dim 0 when dim 0 is 1 (the batch, fixed to 1), the whole shape when it is not
    (a static dim 0 > 1 is data: the model has no batch axis and a sample is the whole
    tensor). The same rule as runtime.host.sample_shape."""
    shape = tuple(int(d) for d in shape)
    return shape[1:] if shape and shape[0] == 1 else shape


def model_inputs(
    path: str | Path, arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """Pick and check the arrays for the model inputs `shapes` (name -> logical shape with batch
    1): each must be (N, *sample_shape(shape)), finite, with the same N; a single sample may
    come without N. Other keys (e.g. 'label') are ignored. Returns float32 arrays."""
    names = list(shapes)
    if "" in arrays:  # a .npy file
        if len(names) != 1:
            raise MicroqError(f"{path}: a .npy holds one array but the model has inputs "
                              f"{names}; use an .npz keyed by input name")
        arrays = {names[0]: arrays[""]}
    out = {}
    n = None
    for name in names:
        if name not in arrays:
            raise MicroqError(f"{path}: no array named '{name}' (found {sorted(arrays)}); "
                              f"key the .npz by the model's input names {names}")
        a = np.asarray(arrays[name])
        want = sample_shape(shapes[name])
        if a.ndim == len(want):  # a single sample without the batch axis
            a = a[None]
        if tuple(a.shape[1:]) != want:
            raise MicroqError(f"{path}: array '{name}' has shape {tuple(a.shape)}, expected "
                              f"(N, {', '.join(map(str, want))}) for input '{name}'")
        if not np.issubdtype(a.dtype, np.number):
            raise MicroqError(f"{path}: array '{name}' has dtype {a.dtype}, expected numbers")
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            bad = int(np.argwhere(~np.isfinite(a))[0][0])
            raise MicroqError(f"{path}: array '{name}' contains NaN or Inf (first in sample "
                              f"{bad}); clean the data")
        if n is not None and len(a) != n:
            raise MicroqError(f"{path}: inputs have different sample counts ({n} vs {len(a)})")
        n = len(a)
        if n == 0:
            raise MicroqError(f"{path}: array '{name}' has no samples")
        out[name] = a
    return out
