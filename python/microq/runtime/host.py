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
from . import cbuild

STATUS_NAMES = {1: "MQ_ERR_ARG", 2: "MQ_ERR_SIZE"}  # c_runtime/include/mq_types.h


@dataclass
class HostModel:
    folder: Path
    meta: dict
    ffi: object
    lib: object

    @classmethod
    def load(cls, folder: Path | str) -> HostModel:
        """Read NAME.json of a generated folder and build its C (cached)."""
        folder = Path(folder)
        metas = sorted(folder.glob("*.json"))
        if len(metas) != 1:
            raise MicroqError(
                f"{folder}: expected one NAME.json of a generated model, found {len(metas)}"
            )
        meta = json.loads(metas[0].read_text())
        name = meta["name"]
        from ..codegen.runtime_pkg import source_dir

        header = source_dir(folder, meta) / f"{name}.h"
        if not header.exists():
            raise MicroqError(f"{folder}: {header.name} is missing")
        defines = {"MQ_SINGLE_ROUNDING": "1"} if meta.get("rounding") == "single" else None
        from ..codegen.runtime_pkg import build_inputs

        sources, includes = build_inputs(folder, meta)  # + the runtime, if linked apart
        ffi, lib = cbuild.build(
            f"model_{name}",
            sources,
            includes,
            cbuild.cdef_from_headers([header]),
            f'#include "{name}.h"\n',
            defines,
        )
        return cls(folder, meta, ffi, lib)

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
        """Run N samples: inputs[name] is int8 (N, *physical[1:]); returns outputs likewise."""
        xs = []
        n = None
        for spec in self.inputs:
            if spec["name"] not in inputs:
                raise MicroqError(f"model {self.name}: missing input '{spec['name']}'")
            x = np.asarray(inputs[spec["name"]])
            want = tuple(spec["shape"][1:])
            if x.dtype != np.int8 or tuple(x.shape[1:]) != want or x.ndim != len(want) + 1:
                raise MicroqError(
                    f"model {self.name}: input '{spec['name']}' must be int8 (N, "
                    f"{', '.join(map(str, want))}), got {x.dtype} {x.shape}"
                )
            if n is not None and x.shape[0] != n:
                raise MicroqError(f"model {self.name}: inputs have different batch sizes")
            n = x.shape[0]
            xs.append(np.ascontiguousarray(x))
        n = n or 0
        ys = [np.zeros((n, *spec["shape"][1:]), dtype=np.int8) for spec in self.outputs]
        invoke = getattr(self.lib, f"{self.name}_invoke_multi")
        in_ptrs = self.ffi.new("int8_t *[]", max(len(xs), 1))
        out_ptrs = self.ffi.new("int8_t *[]", max(len(ys), 1))
        for i in range(n):
            keep = []  # the cdata of from_buffer must outlive the call
            for k, x in enumerate(xs):
                keep.append(self.ffi.from_buffer("int8_t[]", x[i]))
                in_ptrs[k] = keep[-1]
            for k, y in enumerate(ys):
                keep.append(self.ffi.from_buffer("int8_t[]", y[i], require_writable=True))
                out_ptrs[k] = keep[-1]
            status = invoke(in_ptrs, out_ptrs)
            if status != 0:
                what = STATUS_NAMES.get(status, "unknown status")
                raise MicroqError(
                    f"model {self.name}: a kernel returned {what} ({status}) on sample {i}"
                )
        return {spec["name"]: y for spec, y in zip(self.outputs, ys)}

    def logical_input_shapes(self) -> dict[str, tuple[int, ...]]:
        """The user's (ONNX) shape of each input, batch 1."""
        return {s["name"]: tuple(s["logical_shape"]) for s in self.inputs}

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
            x = x.transpose(spec["input_perm"])
        q = np.round(x / np.float32(spec["scale"])) + np.float32(spec["zero_point"])
        return np.ascontiguousarray(np.clip(q, -128, 127).astype(np.int8))

    def dequantize_output(self, name: str, q: np.ndarray) -> np.ndarray:
        """int8 output `name` -> float32: (q - zero_point) * scale."""
        spec = self._spec(self.outputs, name)
        real = (np.asarray(q, dtype=np.float64) - spec["zero_point"]) * spec["scale"]
        return real.astype(np.float32)
