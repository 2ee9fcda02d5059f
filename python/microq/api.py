"""The Python API: compile, load, run, compare, inspect. Ties the importer, quantizer, codegen and
host runtime together; the CLI calls only this module."""

from __future__ import annotations

import contextlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import qir
from .data import load_arrays, model_inputs
from .errors import MicroqError

QGRAPH_FILE = "qgraph.pickle"  # inside the generated folder's .microq/ (for compare)


# --- progress --------------------------------------------------------------------------------
class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def progress_bar(label: str, quiet: bool = False, length: int | None = None):
    """A click progress bar on stderr (hidden when quiet or not a terminal)."""
    import sys

    import click

    if quiet or not sys.stderr.isatty():
        yield _NoBar()
        return
    with click.progressbar(length=length or 0, label=label, file=sys.stderr) as bar:
        yield bar


# --- inspect ---------------------------------------------------------------------------------
@dataclass
class InspectView:
    report: object

    def table(self) -> str:
        from .onnx_import.inspect import format_table

        return format_table(self.report)

    def to_json(self) -> dict:
        from .onnx_import.inspect import to_json

        return to_json(self.report)


def inspect(model: str | Path) -> InspectView:
    from .onnx_import import inspect_onnx

    return InspectView(inspect_onnx(str(model)))


# --- compile ---------------------------------------------------------------------------------
@dataclass
class CompileResult:
    qgraph: qir.QGraph
    out_dir: Path
    meta: dict

    def summary_json(self) -> dict:
        from .report import summary_json

        return summary_json(self.meta)

    def summary_table(self) -> str:
        from .report import summary_table

        return summary_table(self.meta)


def _check_writable(out_dir: Path) -> None:
    """Fail before any work if the output folder cannot be written (parents are created)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MicroqError(f"{out_dir}: exists and is not a folder; choose another -o")
    parent = out_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MicroqError(f"{out_dir}: cannot create {parent} ({e.strerror}); "
                          "choose a writable -o") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MicroqError(f"{out_dir}: cannot write in {parent} (permission denied); "
                          "choose a writable -o")


def quantize_model(model: str | Path, calib, method: str = "minmax", progress=None):
    """Import, calibrate and quantize: returns (float graph, quantized graph)."""
    from .onnx_import import import_onnx
    from .quant.calibrate import calibrate
    from .quant.quantize import check_finite_weights, quantize
    from .ref.float_exec import to_physical

    graph = import_onnx(str(model))
    check_finite_weights(graph)
    shapes = {k: graph.logical_shapes[k] for k in graph.inputs}
    arrays = calib if isinstance(calib, dict) else load_arrays(calib)
    data = model_inputs(calib if not isinstance(calib, dict) else "calibration data", arrays,
                        shapes)
    feeds = {k: to_physical(graph, k, v) for k, v in data.items()}
    ranges = calibrate(graph, feeds, method=method, progress=progress)
    return graph, quantize(graph, ranges)


def compile_model(model, calib, out_dir, name: str = "net", method: str = "minmax",
                  command: str = "", progress=None) -> CompileResult:
    """ONNX model + calibration data -> generated C folder. Nothing is written on error."""
    from .codegen import emit

    out_dir = Path(out_dir)
    _check_writable(out_dir)
    _, qg = quantize_model(model, calib, method=method, progress=progress)
    extra = {f".microq/{QGRAPH_FILE}": pickle.dumps(qg, protocol=4)}
    emit(qg, out_dir, name, command=command, extra_files=extra)
    return CompileResult(qg, out_dir, load_meta(out_dir))


def load_meta(model_dir: str | Path) -> dict:
    import json

    d = Path(model_dir)
    metas = sorted(d.glob("*.json")) if d.is_dir() else []
    if not metas:
        raise MicroqError(f"{d}: not a microq output folder (no NAME.json); run `microq compile`")
    return json.loads(metas[0].read_text())


def load_qgraph(model_dir: str | Path) -> qir.QGraph:
    p = Path(model_dir) / ".microq" / QGRAPH_FILE
    if not p.is_file():
        raise MicroqError(f"{model_dir}: {p.name} missing; compile the model again")
    return pickle.loads(p.read_bytes())


# --- run -------------------------------------------------------------------------------------
def load(model_dir: str | Path):
    """The host build of a generated folder (cffi, cached by content)."""
    from .runtime.host import HostModel

    if not Path(model_dir).is_dir():
        raise MicroqError(f"{model_dir}: no such folder; run `microq compile` first")
    return HostModel.load(Path(model_dir))


def run(model_dir, inputs, raw: bool = False) -> dict[str, np.ndarray]:
    """Run the generated C on the host. `inputs`: a data file path or a dict of float arrays in
    the ONNX layout (N, *input_shape[1:]). Returns outputs keyed by name, dequantized unless raw."""
    m = load(model_dir)
    arrays = inputs if isinstance(inputs, dict) else load_arrays(inputs)
    data = model_inputs(inputs if not isinstance(inputs, dict) else "inputs", arrays,
                        m.logical_input_shapes())
    q = {k: m.quantize_input(k, v) for k, v in data.items()}
    out = m.run_int8(q)
    return out if raw else {k: m.dequantize_output(k, v) for k, v in out.items()}


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    p = Path(path)
    if not p.resolve().parent.is_dir():
        raise MicroqError(f"{p}: folder {p.resolve().parent} does not exist")
    tmp = p.with_name(p.name + ".tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, p)
    except OSError as e:
        raise MicroqError(f"{p}: cannot write ({e.strerror})") from None


# --- compare ---------------------------------------------------------------------------------
def compare(model, model_dir, data):
    from .report import compare as _compare

    return _compare(model, model_dir, data)
