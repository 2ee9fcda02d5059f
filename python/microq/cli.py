"""The `microq` command line: a thin click group over microq.api."""

from __future__ import annotations

import json
import shlex
import sys
import time

import click

from . import __version__
from .errors import MicroqError


def _fail(e: Exception) -> None:
    raise click.ClickException(str(e))


class _Group(click.Group):
    """Turns MicroqError into a one-line message and exit status 1 (no traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MicroqError as e:
            _fail(e)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="microq")
def main() -> None:
    """microq: float ONNX model in, integer-only int8 C for microcontrollers out.

    \b
    Typical use:
      microq inspect model.onnx
      microq compile model.onnx --calib calib.npz -o out/net --name net
      microq run out/net --input test.npz -o pred.npz
      microq compare model.onnx out/net --data test.npz
    """


@main.command()
@click.argument("model", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect(model: str, as_json: bool) -> None:
    """Print one row per layer of MODEL (op, shapes, MACs, parameters) and list every node
    microq cannot compile yet. Never fails on unsupported nodes."""
    from . import api

    report = api.inspect(model)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.table())


@main.command(name="compile")
@click.argument("model", type=str)
@click.option("--calib", required=True, type=str,
              help="Calibration samples: .npz keyed by input name, arrays (N, *input_shape[1:]) "
                   "in the ONNX layout; a .npy works for a single-input model.")
@click.option("-o", "--out", "out_dir", required=True, type=str,
              help="Output folder for the generated C (replaced atomically).")
@click.option("--name", default="net", show_default=True,
              help="C identifier prefix: NAME.h, NAME_invoke(), NAME_ARENA_SIZE.")
@click.option("--method", type=click.Choice(["minmax", "percentile"]), default="minmax",
              show_default=True, help="How activation ranges are calibrated.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def compile_(model, calib, out_dir, name, method, as_json) -> None:
    """Quantize MODEL to int8 with the calibration data and write a self-contained C folder
    (NAME.h, NAME.c, weights, runtime sources) that compiles with any C99 compiler."""
    from . import api

    if not name.isidentifier():
        raise MicroqError(f"--name '{name}' is not a C identifier; use letters, digits and _")
    command = "microq " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t0 = time.perf_counter()
    with api.progress_bar("calibrating", as_json) as bar:
        result = api.compile_model(model, calib, out_dir, name=name, method=method,
                                   command=command, progress=bar.update)
    seconds = time.perf_counter() - t0
    if as_json:
        click.echo(json.dumps(dict(result.summary_json(), seconds=round(seconds, 2)), indent=2))
    else:
        click.echo(result.summary_table())
        click.echo(f"wrote {out_dir}/ in {seconds:.1f} s")


@main.command()
@click.argument("model_dir", type=str)
@click.option("--input", "input_path", required=True, type=str,
              help=".npz keyed by input name (other keys ignored) or .npy, float, ONNX layout.")
@click.option("-o", "--out", "out_path", required=True, type=str,
              help="Output .npz keyed by output name, shaped (N, *output_shape[1:]).")
@click.option("--raw", is_flag=True, help="Write the int8 outputs instead of dequantized floats.")
def run(model_dir, input_path, out_path, raw) -> None:
    """Build MODEL_DIR (a folder from `microq compile`) for the host, run it on every sample of
    the input file, and save the outputs."""
    from . import api

    outputs = api.run(model_dir, input_path, raw=raw)
    api.save_npz(out_path, outputs)
    shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in outputs.items())
    click.echo(f"wrote {out_path}: {shapes}")


@main.command()
@click.argument("model", type=str)
@click.argument("model_dir", type=str)
@click.option("--data", required=True, type=str,
              help="Samples (.npz keyed by input name); a 'label' array adds accuracy.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def compare(model, model_dir, data, as_json) -> None:
    """Run the float MODEL (onnxruntime) and the int8 C of MODEL_DIR on the same data and report
    per output and per layer: max abs error, SQNR (dB), cosine; top-1 agreement and accuracy."""
    from . import api

    report = api.compare(model, model_dir, data)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.table())
