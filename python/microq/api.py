"""The Python API: compile, load, run, compare, inspect. Ties the importer, quantizer, codegen and
host runtime together; the CLI calls only this module."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import names, qir
from .data import load_arrays, model_inputs
from .errors import MicroqError

# the quantized graph for `compare` is stored in the folder's .microq/ as JSON + npz
# (codegen.store; never pickle: loading a folder must not run code)


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


def calibration_steps(calib, method: str) -> int | None:
    """Length of the calibration progress bar: samples x passes over them (None if unknown)."""
    from .quant.calibrate import passes

    if calib is None:
        return None
    try:
        arrays = calib if isinstance(calib, dict) else load_arrays(calib)
    except MicroqError:
        return None  # compile_model reports the problem with the file
    first = next((a for k, a in arrays.items() if k != "label"), None)
    return None if first is None or np.ndim(first) == 0 else len(first) * passes(method)


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
    """Describe a float or QDQ ONNX model (a QDQ one as compile sees it: without its Q/DQ
    nodes) or an int8 .tflite (one row per kernel call)."""
    from .onnx_import import inspect_onnx, load_onnx
    from .qdq.strip import is_qdq, strip_qdq

    path = str(model)
    if path.lower().endswith(".tflite"):
        from .tflite_import.inspect import inspect_tflite

        return InspectView(inspect_tflite(path))
    onnx_model = load_onnx(path)
    if is_qdq(onnx_model):
        return InspectView(inspect_onnx(path, strip_qdq(onnx_model, path).model, quantized=True))
    return InspectView(inspect_onnx(path, onnx_model))


# --- compile ---------------------------------------------------------------------------------
@dataclass
class CompileResult:
    qgraph: qir.QGraph
    out_dir: Path
    meta: dict
    kept: tuple[str, ...] = ()  # files and folders the user had added to out_dir, carried over
    int16: dict | None = None  # --int16: chosen layers, low isolated SQNRs, RAM/MAC cost

    def summary_json(self) -> dict:
        from .report import summary_json

        return summary_json(self.meta)

    def summary_table(self) -> str:
        from .report import summary_table

        return summary_table(self.meta)


def _check_writable(out_dir: Path) -> None:
    """Fail before any work if the output folder cannot be written (parents are created)."""
    from .codegen.emit import MARKER

    if out_dir.exists() and not out_dir.is_dir():
        raise MicroqError(f"{out_dir}: exists and is not a folder; choose another -o")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise MicroqError(f"{out_dir} is a folder microq did not write and is not empty; "
                          "choose a new -o (microq writes only into its own folders)")
    parent = out_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MicroqError(f"{out_dir}: cannot create {parent} ({e.strerror}); "
                          "choose a writable -o") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MicroqError(f"{out_dir}: cannot write in {parent} (permission denied); "
                          "choose a writable -o")


def quantize_model(model: str | Path, calib, method: str = "minmax", progress=None,
                   rounding: str = "double", bias_correction: bool = False, int16=None,
                   info: dict | None = None):
    """Import, calibrate (`method`: minmax, percentile, entropy, mse) and quantize; with
    bias_correction, correct conv/FC biases on the calibration data. Returns (float graph,
    quantized graph). `progress(n)` advances N * calibrate.passes(method) samples, then one step
    per node when bias_correction."""
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
    qg = quantize(graph, ranges, rounding=rounding)
    if int16:  # 16x8 layers (quant/rules_s16.py): a list of layer names or "auto"
        from . import compare as compare_mod
        from .quant import rules_s16

        if bias_correction:
            raise MicroqError("--bias-correction cannot be combined with --int16 (it corrects "
                              "int8 layers); use one of them")

        layers, low = (list(int16) if not isinstance(int16, str) else None), {}
        if isinstance(int16, str):
            if int16 != "auto":
                raise MicroqError(f"int16 must be 'auto' or a list of layer names, not {int16!r}")
            layers, low = compare_mod.auto_layers(graph, qg, feeds, rounding)
        qg8 = qg
        qg = rules_s16.quantize_mixed(graph, ranges, layers, rounding=rounding)
        if info is not None:  # what --int16 chose and what it costs
            info["int16"] = {"layers": layers, "low_sqnr_db": low,
                             **compare_mod.int16_cost(qg8, qg)}
    if bias_correction:
        from .quant.bias_correction import correct_biases

        qg = correct_biases(graph, qg, feeds, rounding=rounding, progress=progress)
    return graph, qg


def quantize_to_qdq(model: str | Path, calib, out_path: str | Path, method: str = "minmax",
                    progress=None, bias_correction: bool = False) -> Path:
    """Quantize an ONNX model and write it as a standard QDQ ONNX model (onnxruntime, Netron)."""
    from .qdq import export_qdq

    out = Path(out_path)
    _check_writable_file(out)
    _, qg = quantize_model(model, calib, method=method, progress=progress,
                           bias_correction=bias_correction)
    # written next to the target and renamed over it: never a half-written model
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")  # same format
    try:
        export_qdq(model, qg, tmp)
        os.replace(tmp, out)
    except OSError as e:
        raise MicroqError(f"{out}: cannot write ({e.strerror or e}); choose a writable -o"
                          ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return out


def _check_writable_file(out: Path) -> None:
    """Fail before any work if the output file cannot be written (its folder must exist)."""
    if out.is_dir():
        raise MicroqError(f"{out}: is a folder; -o takes the file to write (e.g. model.int8.onnx)")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise MicroqError(f"{out}: folder {parent} does not exist; create it or choose another -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MicroqError(f"{out}: cannot write in {parent} (permission denied); "
                          "choose a writable -o")


def _is_qdq_onnx(model) -> bool:
    """True for an ONNX model (file or proto) with QuantizeLinear/DequantizeLinear nodes."""
    import onnx

    from .qdq import is_qdq

    if isinstance(model, onnx.ModelProto):
        return is_qdq(model)
    if Path(model).suffix.lower() != ".onnx" or not Path(model).is_file():
        return False
    from .onnx_import import load_onnx

    return is_qdq(load_onnx(str(model)))


def compile_model(model, calib, out_dir, name: str = "net", method: str = "minmax",
                  command: str = "", progress=None, rounding: str = "double",
                  bias_correction: bool = False, runtime: str = "copy",
                  layout: str = "flat", int16=None) -> CompileResult:
    """ONNX model + calibration data, or an int8 .tflite (already quantized: calib is unused),
    -> generated C folder. `rounding` "single" builds with MQ_SINGLE_ROUNDING. `runtime`
    "external" leaves the runtime files out (link the folder written by write_runtime); `layout`
    "arduino" writes an Arduino library. Nothing is written on error."""
    from .codegen import emit
    from .codegen.emit import check_io, check_name

    info: dict = {}
    check_name(name)
    out_dir = Path(out_dir)
    _check_writable(out_dir)
    if Path(model).suffix.lower() == ".tflite":
        from .tflite_import import import_tflite

        qg = import_tflite(model, rounding=rounding)
    elif _is_qdq_onnx(model):  # already quantized: its own scales and zero points
        from .qdq import import_qdq

        qg = import_qdq(model, rounding=rounding)
    else:
        if calib is None:
            raise MicroqError(f"{model}: an ONNX model needs calibration data (--calib)")
        _, qg = quantize_model(model, calib, method=method, progress=progress,
                               rounding=rounding, bias_correction=bias_correction, int16=int16,
                               info=info)
    if int16 and Path(model).suffix.lower() == ".tflite" or int16 and _is_qdq_onnx(model):
        raise MicroqError(f"{model}: --int16 applies to float ONNX models; a quantized model "
                          "keeps its own types")
    from .codegen import store

    check_io(qg, str(model))
    extra = {f".microq/{k}": v for k, v in store.dump(qg).items()}
    summary = emit(qg, out_dir, name, command=command, rounding=rounding, extra_files=extra,
                   runtime=runtime, layout=layout)
    return CompileResult(qg, out_dir, load_meta(out_dir), kept=summary.kept,
                         int16=info.get("int16"))


def _recover(model_dir) -> None:
    """A folder missing because a compile was killed inside its swap is put back first."""
    if not Path(model_dir).exists():
        from .codegen.swap import recover

        recover(Path(model_dir))


def write_runtime(out_dir: str | Path) -> list[str]:
    """Write the whole C runtime once into `out_dir` (for folders compiled with runtime
    "external"); returns the file names."""
    from .codegen.emit import write_folder
    from .codegen.runtime_pkg import runtime_folder_files

    out_dir = Path(out_dir)
    _check_writable(out_dir)
    files = runtime_folder_files()
    write_folder(out_dir, files)  # replaces an earlier one atomically
    return sorted(files)


def load_meta(model_dir: str | Path) -> dict:
    _recover(model_dir)
    from .runtime.host import load_meta as load

    return load(model_dir)


def load_qgraph(model_dir: str | Path) -> qir.QGraph:
    """The quantized graph a folder was generated from (JSON + npz; no code runs)."""
    from .codegen import store

    _recover(model_dir)
    if not Path(model_dir).is_dir():
        raise MicroqError(f"{model_dir}: no such folder; run `microq compile` first")
    return store.load(Path(model_dir) / ".microq")


# --- run -------------------------------------------------------------------------------------
def load(model_dir: str | Path):
    """The host build of a generated folder (cffi, cached by content)."""
    from .runtime.host import HostModel

    _recover(model_dir)
    if not Path(model_dir).is_dir():
        raise MicroqError(f"{model_dir}: no such folder; run `microq compile` first")
    return HostModel.load(Path(model_dir))


def run(model_dir, inputs, raw: bool = False) -> dict[str, np.ndarray]:
    """Run the generated C on the host. `inputs`: a data file path or a dict of float arrays in
    the ONNX layout (N, *input_shape[1:]). Returns outputs keyed by name, dequantized unless raw,
    each (N, *shape[1:]), or (N, *shape) when its shape does not start with 1 (a view(-1) head
    [3] gives (N, 3)): runtime.host.sample_shape."""
    m = load(model_dir)
    q = _quantized_inputs(m, inputs)
    out = m.run_int8(q)
    return out if raw else {k: m.dequantize_output(k, v) for k, v in out.items()}


def _quantized_inputs(m, inputs) -> dict[str, np.ndarray]:
    """`inputs` of run/run_on (a data file path or a dict of float arrays), checked against the
    model's inputs and quantized into the physical layout."""
    if isinstance(inputs, dict):
        arrays, what = inputs, "inputs"
    elif isinstance(inputs, (str, os.PathLike)):
        arrays, what = load_arrays(inputs), inputs
    else:
        names = [s["name"] for s in m.inputs]
        raise MicroqError(f"inputs must be a data file path or a dict {{input name: array}}, "
                          f"not {type(inputs).__name__}; e.g. {{{names[0]!r}: x}}" if names else
                          f"inputs must be a data file path or a dict, not {type(inputs).__name__}")
    data = model_inputs(what, arrays, m.batched_input_shapes())
    return {k: m.quantize_input(k, v) for k, v in data.items()}


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    p = Path(path)
    try:  # a missing parent is created, as compile's -o does
        p.resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MicroqError(f"{p}: cannot create {p.resolve().parent} ({e.strerror})") from None
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
    """Float `model` (onnxruntime) vs the int8 model compiled into model_dir on the samples in
    the .npz `data`: per output and per layer (a report.CompareReport)."""
    from .compare import check_model_matches
    from .compare import compare as _compare
    from .onnx_import import load_onnx

    onnx_model = load_onnx(model)  # a one-line error for a missing or damaged file
    qg = load_qgraph(model_dir)
    check_model_matches(model, onnx_model, model_dir, qg)
    graph = _float_graph(model, onnx_model)  # unsupported models fail before any run
    rounding = load_meta(model_dir).get("rounding", "double")
    return _compare(model, graph, qg, lambda d: run(model_dir, d), data, rounding)


def _float_graph(model, onnx_model):
    """The float IR the int8 layers are measured against; a QDQ model's is its float model
    without the Q/DQ nodes (as qdq.import_qdq compiles it)."""
    from .onnx_import import import_onnx
    from .qdq import is_qdq
    from .qdq.strip import strip_qdq

    if not is_qdq(onnx_model):
        return import_onnx(str(model))
    graph = import_onnx(strip_qdq(onnx_model, str(model)).model)
    graph.source_path = str(model)
    return graph


def plot_compare(report, path: str | Path) -> None:
    """SQNR per layer of a compare report as a PNG (needs matplotlib, an optional extra)."""
    from .report import plot

    plot(report, path)


# --- emulated MCU targets ----------------------------------------------------------------------
TARGET_NAMES = names.TARGET_NAMES


def emulation_timeout(model_dir, samples: int) -> float:
    """A generous default time limit for an emulated run: QEMU executes about 4e8 guest
    instructions/s and our kernels need under ~30 instructions per MAC on any core; x4 margin."""
    macs = sum(int(layer.get("macs", 0)) for layer in load_meta(model_dir)["layers"])
    return 30.0 + 4.0 * samples * max(macs, 100_000) * 30 / 4e8


def run_on(model_dir, inputs, target: str = "host", raw: bool = False,
           dsp: bool | None = None, timeout: float | None = None) -> dict[str, np.ndarray]:
    """`run` on the host or on an emulated Cortex-M core (QEMU); the same outputs either way.
    `timeout` (seconds) bounds the emulated run; by default it scales with samples x MACs."""
    if target == "host":
        return run(model_dir, inputs, raw=raw)
    from .runtime import mcu

    m = load(model_dir)  # the host build supplies the quantization helpers
    q = _quantized_inputs(m, inputs)
    n = len(next(iter(q.values())))
    limit = timeout if timeout is not None else emulation_timeout(model_dir, n)
    out = mcu.run_int8(model_dir, target, q, dsp=dsp, timeout=limit)
    return out if raw else {k: m.dequantize_output(k, v) for k, v in out.items()}


def size(model_dir, target: str = "cortex-m4") -> dict:
    """Flash and RAM of the linked image for `target`: runtime code, model code, weights, arena,
    stack (measured by painting the stack on the emulator)."""
    from .runtime.mcu_size import size_report

    _require_dir(model_dir)
    return size_report(model_dir, target)


def fit(model_dir, board: str) -> dict:
    """Flash and RAM the model needs on a real part (runtime/boards.py: STM32F411, STM32L4R5,
    nRF52840, RP2040, ESP32-C3, micro:bit) and whether it fits, by how many bytes over."""
    from .runtime.boards import fit_report

    _require_dir(model_dir)
    return fit_report(model_dir, board)


def profile(model_dir, target: str = "cortex-m4", dsp: bool | None = None) -> dict:
    """Exact instruction counts of one inference on the emulated core, per layer and in total."""
    from .runtime.profile import profile as _profile

    _require_dir(model_dir)
    return _profile(model_dir, target, dsp=dsp)


def _require_dir(model_dir) -> None:
    _recover(model_dir)
    if not Path(model_dir).is_dir():
        raise MicroqError(f"{model_dir}: no such folder; run `microq compile` first")


# --- what the CLI shows (cli imports only api, errors and report's formatting) ---------------
def ops_table():
    """The supported-ops table behind `microq ops` (onnx_import.ops_table)."""
    from .onnx_import import ops_table as table

    return table


def check_name(name: str) -> None:
    """Refuse a NAME that is no C identifier (MicroqError), before any work."""
    from .codegen.emit import check_name as check

    check(name)


def require_matplotlib() -> None:
    from .codegen.memplot import require_matplotlib as need

    need()


def plan(qgraph):
    """The arena plan of a quantized graph (codegen.plan.plan_graph)."""
    from .codegen.plan import plan_graph

    return plan_graph(qgraph)


def plot_memory(qgraph, path) -> None:
    """The arena plan of `qgraph` as a PNG (needs matplotlib)."""
    from .codegen.memplot import plot_memory as draw

    draw(qgraph, plan(qgraph), path)


def fit_lines(rep: dict) -> str:
    from .runtime.boards import fit_lines as lines

    return lines(rep)


def misfit_message(rep: dict) -> str:
    from .runtime.boards import misfit_message as message

    return message(rep)


def cache_info() -> tuple[str, int, int]:
    """(cache folder, entries, bytes) of the build cache."""
    from .runtime.cache import cache_path, usage

    n, size = usage()
    return str(cache_path()), n, size


def cache_clean() -> tuple[str, int, int]:
    """Empty the build cache; (cache folder, entries removed, bytes removed)."""
    from .runtime.cache import cache_path, clean

    n, size = clean()
    return str(cache_path()), n, size
