"""Host runner: builds a generated C folder through cffi and runs it on numpy int8 batches.

The folder's own NAME.h is the cdef and its own .c files are compiled (cbuild, cached by
content), so the host executes exactly the code the MCU gets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MicroqError
from ..names import is_c_identifier
from ..qir import quantize_int8
from . import cbuild

STATUS_NAMES = {1: "MQ_ERR_ARG", 2: "MQ_ERR_SIZE"}  # c_runtime/include/mq_types.h


def _has_batch_axis(shape) -> bool:
    return len(shape) >= 1 and int(shape[0]) == 1


def sample_shape(shape) -> tuple[int, ...]:
    """The shape of one sample of a graph input/output in the arrays the runners take and
    return, (N, *sample_shape): the compiled (batch-1) shape without its leading 1, or the
    whole shape when it does not start with 1 (a `view(-1)` head [3] gives (N, 3), a
    transposed [3, 1] output (N, 3, 1)). Either way one sample holds prod(shape) bytes, the
    size the C reads or writes."""
    shape = tuple(int(d) for d in shape)
    return shape[1:] if _has_batch_axis(shape) else shape


def batched_text(sample: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, sample)]) + ")"


def load_meta(folder: Path | str) -> dict:
    """The checked NAME.json of a generated folder (the one place that finds it)."""
    folder = Path(folder)
    metas = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not metas:
        raise MicroqError(f"{folder}: not a microq output folder (no NAME.json); run "
                          "`microq compile`")
    if len(metas) != 1:
        raise MicroqError(f"{folder}: not a microq output folder (expected one NAME.json of a "
                          f"generated model, found {len(metas)})")
    return read_meta(metas[0])  # checked: its name and sizes reach the C


def read_meta(path: Path) -> dict:
    """NAME.json, checked enough that nothing in it can make the runner touch memory the C
    does not own or read a file outside the folder: a one-line error otherwise."""
    bad = f"{path}: not the NAME.json of a microq folder"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise MicroqError(f"{bad} ({e}); compile the model again") from None
    if not isinstance(meta, dict):
        raise MicroqError(f"{bad}; compile the model again")
    name = meta.get("name")
    if not isinstance(name, str) or not is_c_identifier(name):
        raise MicroqError(f"{bad} (name {name!r} is not a C identifier); compile it again")
    for kind in ("inputs", "outputs"):
        specs = meta.get(kind)
        if not isinstance(specs, list):
            raise MicroqError(f"{bad} (no '{kind}' list); compile the model again")
        for spec in specs:
            if isinstance(spec, dict) and "logical_shape" not in spec:
                spec["logical_shape"] = spec.get("shape")  # the same layout
            if not _spec_ok(spec):
                raise MicroqError(f"{bad} (a malformed entry in '{kind}'); compile it again")
    layers = meta.get("layers", [])
    if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
        raise MicroqError(f"{bad} (a malformed 'layers' list); compile the model again")
    return meta


def _dims_ok(dims) -> bool:
    return isinstance(dims, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims
    )


def _spec_ok(spec) -> bool:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return False
    dims, logical, perm = spec.get("shape"), spec.get("logical_shape"), spec.get("input_perm")
    if not _dims_ok(dims) or not _dims_ok(logical):
        return False
    if spec.get("size") != int(np.prod(dims, dtype=np.int64)):
        return False
    if perm is not None and (not _dims_ok(perm) or sorted(perm) != list(range(len(logical)))):
        return False
    numbers = (spec.get("scale"), spec.get("zero_point"))
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers)


def _io_dtype(spec: dict) -> np.dtype:
    """int8, or int16 for a 16x8 tensor (NAME.json "dtype"; older folders have none)."""
    return np.dtype(np.int16 if spec.get("dtype") == "int16" else np.int8)


@dataclass
class HostModel:
    folder: Path
    meta: dict
    ffi: object
    lib: object

    @classmethod
    def load(cls, folder: Path | str) -> HostModel:
        """Read NAME.json of a generated folder, check it, and build its C (cached)."""
        folder = Path(folder)
        meta = load_meta(folder)
        name = meta["name"]
        from .locate import source_dir

        header = source_dir(folder, meta) / f"{name}.h"
        if not header.exists():
            raise MicroqError(f"{folder}: {header.name} is missing")
        defines = {"MQ_SINGLE_ROUNDING": "1"} if meta.get("rounding") == "single" else None
        from .locate import build_inputs

        sources, includes = build_inputs(folder, meta)  # + the runtime, if linked apart
        ffi, lib = cbuild.build(
            f"model_{name}",
            sources,
            includes,
            cbuild.cdef_from_headers([header]),
            f'#include "{name}.h"\n',
            defines,
        )
        model = cls(folder, meta, ffi, lib)
        model._check_against_header()
        return model

    def _check_against_header(self) -> None:
        """NAME.json must describe the C exactly: the number of inputs/outputs and every size
        agree with NAME.h, so the buffers run_int8 passes are the sizes the C reads/writes."""
        up = self.name.upper()
        where = f"{self.folder}: {self.name}.json does not match {self.name}.h"
        for kind, specs in (("INPUT", self.inputs), ("OUTPUT", self.outputs)):
            count = getattr(self.lib, f"{up}_NUM_{kind}S", None)
            if count is not None and count != len(specs):
                raise MicroqError(f"{where} ({len(specs)} vs {count} {kind.lower()}s); "
                                  "compile the model again")
            for k, spec in enumerate(specs):
                size = getattr(self.lib, f"{up}_{kind}{k}_SIZE", None)
                if size is not None and size != spec["size"]:
                    raise MicroqError(f"{where} ({kind.lower()} {k} '{spec['name']}': "
                                      f"{spec['size']} vs {size} bytes); compile the model again")

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def inputs(self) -> list[dict]:
        return self.meta["inputs"]

    @property
    def outputs(self) -> list[dict]:
        return self.meta["outputs"]

    def run_int8(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run N samples: inputs[name] is int8 (N, *sample_shape(physical)); returns the outputs
        likewise (see sample_shape). Every buffer handed to the C is exactly the size it reads
        or writes (NAME.h's SIZE)."""
        if not isinstance(inputs, dict):
            raise MicroqError(f"model {self.name}: inputs must be a dict {{input name: int8 "
                              f"array}}, got {type(inputs).__name__}")
        xs = []
        n = None
        for spec in self.inputs:
            if spec["name"] not in inputs:
                raise MicroqError(f"model {self.name}: missing input '{spec['name']}'")
            x = np.asarray(inputs[spec["name"]])
            want = sample_shape(spec["shape"])
            dt = _io_dtype(spec)
            if x.dtype != dt or x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
                raise MicroqError(
                    f"model {self.name}: input '{spec['name']}' must be {dt.name} "
                    f"{batched_text(want)}, got {x.dtype} {x.shape}"
                )
            if n is not None and x.shape[0] != n:
                raise MicroqError(f"model {self.name}: inputs have different batch sizes")
            n = x.shape[0]
            xs.append(np.ascontiguousarray(x).reshape(n, spec["size"]))
        n = n or 0
        ys = [np.zeros((n, spec["size"]), dtype=_io_dtype(spec)) for spec in self.outputs]
        invoke = getattr(self.lib, f"{self.name}_invoke_multi")
        in_ptrs = self.ffi.new("int8_t *[]", max(len(xs), 1))
        out_ptrs = self.ffi.new("int8_t *[]", max(len(ys), 1))
        for i in range(n):
            keep = []  # the cdata of from_buffer must outlive the call
            for k, x in enumerate(xs):
                # the bytes (an int16 tensor is passed as int8_t *, as NAME.h declares)
                keep.append(self.ffi.from_buffer("int8_t[]", x[i : i + 1].view(np.int8)))
                in_ptrs[k] = keep[-1]
            for k, y in enumerate(ys):
                keep.append(self.ffi.from_buffer("int8_t[]", y[i : i + 1].view(np.int8),
                                                 require_writable=True))
                out_ptrs[k] = keep[-1]
            status = invoke(in_ptrs, out_ptrs)
            if status != 0:
                what = STATUS_NAMES.get(status, "unknown status")
                raise MicroqError(
                    f"model {self.name}: a kernel returned {what} ({status}) on sample {i}"
                )
        return {
            spec["name"]: y.reshape(n, *sample_shape(spec["shape"]))
            for spec, y in zip(self.outputs, ys)
        }

    def logical_input_shapes(self) -> dict[str, tuple[int, ...]]:
        """The user's (ONNX) shape of each input, batch 1."""
        return {s["name"]: tuple(s["logical_shape"]) for s in self.inputs}

    def batched_input_shapes(self) -> dict[str, tuple[int, ...]]:
        """(1, *sample_shape(logical)) of each input: data.model_inputs checks (N, *[1:])."""
        return {s["name"]: (1, *sample_shape(s["logical_shape"])) for s in self.inputs}

    def _spec(self, specs: list[dict], name: str) -> dict:
        for spec in specs:
            if spec["name"] == name:
                return spec
        raise MicroqError(
            f"model {self.name}: no tensor '{name}' (has {[s['name'] for s in specs]})"
        )

    def quantize_input(self, name: str, x: np.ndarray) -> np.ndarray:
        """Float input `name` in the ONNX layout (N, *logical[1:]) -> int8 in the physical layout
        run_int8 takes. Transposed by input_perm, then q = clip(round(x / scale) + zero_point,
        -128, 127) in float32 (the float executor's input dtype) with np.round: half to even, as
        ONNX QuantizeLinear."""
        spec = self._spec(self.inputs, name)
        x = np.asarray(x, dtype=np.float32)
        if spec.get("input_perm") is not None:
            perm = list(spec["input_perm"])
            if not _has_batch_axis(spec["logical_shape"]):  # axis 0 of x is the sample axis
                perm = [0] + [a + 1 for a in perm]
            x = x.transpose(perm)
        dt = _io_dtype(spec)  # int16 for a 16x8 input
        if dt == np.int8:
            return quantize_int8(x, spec["scale"], spec["zero_point"])
        q = np.round(x / np.float32(spec["scale"])) + np.float32(spec["zero_point"])
        info = np.iinfo(dt)
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dt))

    def dequantize_output(self, name: str, q: np.ndarray) -> np.ndarray:
        """int8 output `name` -> float32: (q - zero_point) * scale."""
        spec = self._spec(self.outputs, name)
        real = (np.asarray(q, dtype=np.float64) - spec["zero_point"]) * spec["scale"]
        return real.astype(np.float32)
