"""Memory safety, injection and error vocabulary (issue 9): the host runner's buffers, model
names in the generated C, the qgraph store of `compare`, --name collisions, outputs with no
producer, one-line user errors and the crash-safe folder swap."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_builders import make_model, run_ort, weights  # noqa: E402

from microq import api  # noqa: E402
from microq.errors import MicroqError  # noqa: E402
from microq.ref.int_exec import run_int  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "python" / "microq" / "assets"
DEMO = ASSETS / "digits_cnn.onnx"
CALIB = ASSETS / "digits_calib.npz"


def _x(n: int, k: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32)


# ---- 1. host runner buffers are exactly the C sizes ------------------------------------------


def _head(tail: str) -> onnx.ModelProto:
    """x [1, 4] -> Gemm [1, 3] -> a tail that drops or moves the batch axis."""
    inits = {"w": weights((3, 4)), "b": weights((3,), seed=3)}
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1)]
    if tail == "view_flat":  # torch x.view(-1): a rank-1 output [3]
        inits["s"] = np.array([-1], np.int64)
        nodes.append(helper.make_node("Reshape", ["h", "s"], ["y"]))
    elif tail == "transpose":  # [3, 1]: output dim 0 is not 1
        nodes.append(helper.make_node("Transpose", ["h"], ["y"], perm=[1, 0]))
    elif tail == "scalar_head":  # Gemm to one value, view(-1): a rank-1 output [1]
        inits = {"w": weights((1, 4)), "b": weights((1,), seed=3), "s": np.array([-1], np.int64)}
        nodes.append(helper.make_node("Reshape", ["h", "s"], ["y"]))
    return make_model(nodes, {"x": (1, 4)}, ["y"], inits, batch=1)


# The per-sample shape the runners return: the compiled shape without the batch axis, wherever
# the model put it (the Transpose moves it to axis 1 of [3, 1]: each sample is its 3 values).
HEADS = {"view_flat": (3,), "transpose": (3,), "scalar_head": ()}


@pytest.mark.parametrize("tail", list(HEADS))
def test_host_runner_output_buffers_match_c_sizes(tail, tmp_path) -> None:
    """An output whose dim 0 is not 1 or of rank 1 (view(-1) head): the runner hands the C a
    buffer of exactly NAME_OUTPUT0_SIZE bytes per sample, returns (N, *sample) and equals the
    integer reference bit for bit (a short buffer used to be overrun, rank 1 gave BufferError)."""
    path = tmp_path / f"{tail}.onnx"
    onnx.save(_head(tail), path)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=_x(16))
    res = api.compile_model(path, calib, tmp_path / "out", name="head")
    x = _x(16)[:7]  # inside the calibrated range: the float check is about layout, not clipping
    raw = api.run(tmp_path / "out", {"x": x}, raw=True)["y"]
    assert raw.shape == (7, *HEADS[tail]) and raw.dtype == np.int8
    m = api.load(tmp_path / "out")
    q = m.quantize_input("x", x)
    for i in range(7):
        want = run_int(res.qgraph, {"x": q[i : i + 1]})["y"]
        assert np.array_equal(raw[i].reshape(-1), np.asarray(want).reshape(-1)), f"sample {i}"
    real = api.run(tmp_path / "out", {"x": x})["y"]
    ref = run_ort(_head(tail), {"x": x})[0].reshape(real.shape)
    scale = res.meta["outputs"][0]["scale"]
    assert np.max(np.abs(real - ref)) < 4 * scale


def test_emulated_run_of_a_transposed_output_equals_the_host(tmp_path) -> None:
    """The MCU runner (QEMU, Cortex-M4) returns the same (N, 3) bytes as the host."""
    import shutil

    from conftest import IN_CI

    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"{missing} not installed (under CI=true this is a failure)")
        pytest.skip(f"{missing} not installed")
    path = tmp_path / "tr.onnx"
    onnx.save(_head("transpose"), path)
    np.savez(tmp_path / "d.npz", x=_x(16))
    api.compile_model(path, tmp_path / "d.npz", tmp_path / "out", name="head")
    x = {"x": _x(16)[:4]}
    host = api.run(tmp_path / "out", x, raw=True)["y"]
    mcu = api.run_on(tmp_path / "out", x, target="cortex-m4", raw=True)["y"]
    assert host.shape == mcu.shape == (4, 3) and np.array_equal(host, mcu)


def test_compare_of_a_rank1_output_model(tmp_path) -> None:
    """`compare` on a view(-1) head: onnxruntime's per-sample outputs line up with the C's."""
    path = tmp_path / "flat.onnx"
    onnx.save(_head("view_flat"), path)
    np.savez(tmp_path / "d.npz", x=_x(12))
    api.compile_model(path, tmp_path / "d.npz", tmp_path / "out", name="flat")
    rep = api.compare(path, tmp_path / "out", tmp_path / "d.npz")
    assert rep.outputs["y"].sqnr_db > 30
    assert [r.kernel for r in rep.layers] == ["fully_connected"]


@pytest.fixture(scope="module")
def demo_dir(compiled_model) -> Path:
    return compiled_model("digits", name="net")  # shared (conftest): read-only


def _tampered_copy(src: Path, dst: Path, edit) -> Path:
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / "net.json").read_text())
    edit(meta)
    (dst / "net.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.parametrize("case", ["output_size", "output_shape", "input_count", "name_path",
                                  "input_perm", "not_json"])
def test_host_runner_refuses_metadata_that_disagrees_with_the_header(case, demo_dir, tmp_path):
    """NAME.json decides the buffer sizes: one that disagrees with NAME.h (or names a file
    outside the folder) is refused with one line before any C runs."""

    def edit(meta):
        if case == "output_size":
            meta["outputs"][0]["shape"] = [1, 5]
            meta["outputs"][0]["size"] = 5
        elif case == "output_shape":
            meta["outputs"][0]["shape"] = [1, 5]  # size no longer the product
        elif case == "input_count":
            meta["inputs"] = []
        elif case == "input_perm":
            meta["inputs"][0]["input_perm"] = [0, 7]
        else:
            meta["name"] = "../net"

    d = _tampered_copy(demo_dir, tmp_path / "t", edit)
    if case == "not_json":
        (d / "net.json").write_bytes(b"\xff{")
    with pytest.raises(MicroqError) as e:
        api.run(d, {"input": np.zeros((1, 1, 8, 8), np.float32)})
    assert "\n" not in str(e.value) and "net.json" in str(e.value)


def test_host_runner_rejects_short_int8_input(demo_dir) -> None:
    m = api.load(demo_dir)
    with pytest.raises(MicroqError, match="must be int8"):
        m.run_int8({"input": np.zeros((2, 8, 8), np.int8)})  # one axis short


# ---- 2. model names never reach C text unescaped ---------------------------------------------

# Each tries to end the comment it is written into, change a #define or add a directive.
ATTACKS = [
    "*\\\n/ + 1 /*",  # backslash-newline splices "*" and "/" into a comment terminator
    "*??/\n/ + 1 /*",  # the same with the ??/ trigraph (a backslash under -std=c99)
    "*/ + 1 /*",
    "\n#include \"injected.h\"\n",
    "\n#error injected\n",
    "\r\n#define MQ_OK 1\n",
    "trailing backslash \\",
    "caf\u00e9 \u4e2d\u6587 \x00 \x7f \t",
    "a" * 300 + "*/" + ";" * 50,
    "// line comment \\",
]


def _crafted(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Every tensor and node name of `model` replaced by an attack string (made unique)."""
    g = model.graph
    names: dict[str, str] = {}

    def new(old: str) -> str:
        if old and old not in names:
            names[old] = f"{ATTACKS[len(names) % len(ATTACKS)]}#{len(names)}"
        return names.get(old, old)

    for v in list(g.input) + list(g.output) + list(g.value_info):
        v.name = new(v.name)
    for t in g.initializer:
        t.name = new(t.name)
    for k, n in enumerate(g.node):
        n.name = ATTACKS[k % len(ATTACKS)] + f"@{k}"
        n.input[:] = [new(i) for i in n.input]
        n.output[:] = [new(o) for o in n.output]
    return model, names


@pytest.fixture(scope="module")
def crafted_dir(tmp_path_factory):
    """The demo with crafted names compiled with the ONNX loader's name check switched off: the
    loader refuses control characters in names (tests/test_fuzz_import.py), but codegen must not
    rely on that, since names also arrive from TFLite and QDQ models; this tests codegen's own
    escaping."""
    from microq.onnx_import import loader

    d = tmp_path_factory.mktemp("crafted")
    model, names = _crafted(onnx.load(DEMO))
    onnx.save(model, d / "crafted.onnx")
    calib = dict(np.load(CALIB))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loader, "check_names", lambda model, path: None)
        res = api.compile_model(d / "crafted.onnx", {names["input"]: calib["input"][:32]},
                                d / "net", name="net", command="microq compile \\\n#error x")
    return d, res, names


def test_crafted_names_with_control_characters_are_refused_by_the_loader(crafted_dir) -> None:
    """With the loader's check on (the default), the same crafted model is one line, no folder."""
    d, _, names = crafted_dir
    calib = dict(np.load(CALIB))
    with pytest.raises(MicroqError, match="contains control characters"):
        api.compile_model(d / "crafted.onnx", {names["input"]: calib["input"][:32]}, d / "refused")
    assert not (d / "refused").exists()


def _c_files(folder: Path) -> dict[str, str]:
    """Every .c/.h of a folder; read as ASCII, so a non-ASCII byte fails the test."""
    return {p.name: p.read_text(encoding="ascii") for p in sorted(folder.iterdir())
            if p.suffix in (".c", ".h")}


def _without_comments(text: str) -> str:
    """The C tokens of `text` (comments removed, whitespace runs collapsed); exact once no
    line splice or trigraph is present, which the caller asserts."""
    return " ".join(re.sub(r"/\*.*?\*/", " ", text, flags=re.S).split())


def _tensor_names_numbered(text: str) -> str:
    """The generated tensor pointers (t_*, codegen.emit.tensor_names) renamed t#1, t#2, ... in
    order of first appearance: the same structure compares equal whatever the names were."""
    seen: dict[str, str] = {}
    return re.sub(r"\bt_[A-Za-z0-9_]*", lambda m: seen.setdefault(m[0], f"t#{len(seen) + 1}"),
                  text)


def test_crafted_names_add_no_directive_or_code(crafted_dir, tmp_path) -> None:
    """The names land inside comments (escaped) and in the tensor pointers' identifiers
    (sanitized to ASCII letters, digits and _): no backslash-newline, trigraph, CR or
    non-ASCII byte anywhere, and with the comments removed and the t_* pointers numbered the
    folder is identical to the same model compiled with its ordinary names, token for token
    (so no offset, directive or statement changed)."""
    d, _, _ = crafted_dir
    api.compile_model(DEMO, {"input": dict(np.load(CALIB))["input"][:32]}, tmp_path / "net",
                      name="net")
    crafted, plain = _c_files(d / "net"), _c_files(tmp_path / "net")
    assert sorted(crafted) == sorted(plain)
    for fname, text in crafted.items():
        if fname.startswith("net"):  # the runtime's own macros do use line splices
            assert "??" not in text and "\\\n" not in text and "\r" not in text, fname
        assert (_tensor_names_numbered(_without_comments(text))
                == _tensor_names_numbered(_without_comments(plain[fname]))), fname
    header = crafted["net.h"]
    assert "\\x0a#include \"injected.h\"\\x0a" in crafted["net.c"]  # kept, escaped
    assert "* / + 1 / *" in crafted["net.c"] and "\\x5c\\x0a#error x" in header


def test_crafted_names_folder_compiles_strict_and_runs_exact(crafted_dir, tmp_path) -> None:
    """The folder compiles with -Werror under -std=c99 (trigraphs on) and gnu99, and the host
    build equals the integer reference bit for bit (an injected "+ 1" in an arena offset or a
    spliced line would change the result or the build)."""
    import shutil
    import subprocess

    d, res, names = crafted_dir
    gcc = shutil.which("gcc")
    assert gcc, "gcc is required"
    srcs = sorted(str(p) for p in (d / "net").glob("*.c"))
    for std in ("-std=c99", "-std=gnu99"):
        r = subprocess.run([gcc, std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wtrigraphs",
                            "-Wcomment", "-I", str(d / "net"), "-c", *srcs],
                           cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
    m = api.load(d / "net")
    x = dict(np.load(CALIB))["input"][:8]
    inp, out = names["input"], names["probs"]
    q = m.quantize_input(inp, x)
    got = m.run_int8({inp: q})[out]
    for i in range(len(x)):
        want = run_int(res.qgraph, {inp: q[i : i + 1]})[out]
        assert np.array_equal(got[i].reshape(-1), np.asarray(want).reshape(-1)), i
    meta = json.loads((d / "net" / "net.json").read_text())
    assert meta["inputs"][0]["name"] == inp and meta["outputs"][0]["name"] == out


ASAN_MAIN = r"""
#include <stdio.h>
#include "net.h"
int main(void)
{
    static int8_t in[NET_INPUT_SIZE], out[NET_OUTPUT_SIZE];
    while (fread(in, 1, sizeof in, stdin) == sizeof in) {
        if (net_invoke(in, out) != 0) return 2;
        fwrite(out, 1, sizeof out, stdout);
    }
    return 0;
}
"""


def test_crafted_names_folder_is_clean_under_asan(crafted_dir, tmp_path) -> None:
    """The crafted-name folder built with ASan + UBSan (no recovery) runs clean and gives the
    host's bytes: nothing reads or writes outside the arena (an injected offset would)."""
    import shutil
    import subprocess

    d, _, names = crafted_dir
    gcc = shutil.which("gcc")
    assert gcc, "gcc is required"
    (tmp_path / "main.c").write_text(ASAN_MAIN)
    exe = tmp_path / "net_asan"
    flags = ["-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
             "-fno-wrapv"]
    r = subprocess.run([gcc, *flags, "-I", str(d / "net"), str(tmp_path / "main.c"),
                        *sorted(str(p) for p in (d / "net").glob("*.c")), "-o", str(exe)],
                       capture_output=True, text=True)
    if r.returncode != 0 and "asan" in r.stderr.lower():
        from conftest import IN_CI

        msg = f"no ASan runtime for gcc (apt-get install libasan): {r.stderr.strip()[-200:]}"
        pytest.fail(msg + " (a failure under CI=true)") if IN_CI else pytest.skip(msg)
    assert r.returncode == 0, r.stderr[-3000:]
    m = api.load(d / "net")
    x = dict(np.load(CALIB))["input"][:6]
    q = m.quantize_input(names["input"], x)
    q = np.concatenate([q, np.full((1, *q.shape[1:]), 127, np.int8),
                        np.full((1, *q.shape[1:]), -128, np.int8)])
    run = subprocess.run([str(exe)], input=q.tobytes(), capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    want = m.run_int8({names["input"]: q})[names["probs"]]
    assert run.stdout == want.tobytes()


def test_crafted_names_print_as_one_escaped_row_each(crafted_dir) -> None:
    """The compile summary shows the crafted names escaped: one line per layer, no control
    character reaches the terminal."""
    _, res, _ = crafted_dir
    text = res.summary_table()
    assert not any(ch in text for ch in "\r\x00\x1b\x7f\t")
    rows = text.splitlines()[2:2 + len(res.meta["layers"])]
    assert all(r.split()[0].isdigit() for r in rows), rows


def test_comment_text_keeps_only_safe_characters() -> None:
    from microq.codegen.cformat import COMMENT_SAFE, comment_text

    for attack in ATTACKS + ["/*/", "**/", "/**/", "*//*", "?" * 5 + "/"]:
        got = comment_text(attack)
        assert set(got) <= COMMENT_SAFE | {"\\"}, got
        assert "*/" not in got and "/*" not in got and "??" not in got, got
        assert "\\" not in got.replace("\\x", ""), got  # a backslash only starts \xNN


# ---- 3. the quantized graph for compare is JSON + npz, never pickle --------------------------

TRANSFORMERS = Path(__file__).resolve().parent / "models" / "transformers"


def _same(a, b, where: str = "graph") -> None:
    """a and b are equal with the same types all the way down (arrays: dtype, shape, bytes)."""
    import dataclasses

    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif dataclasses.is_dataclass(a):
        assert vars(a).keys() == vars(b).keys(), where
        for k in vars(a):
            _same(getattr(a, k), getattr(b, k), f"{where}.{k}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _roundtrip(qg, tmp_path: Path):
    from microq.codegen import store

    d = tmp_path / ".microq"
    d.mkdir(parents=True, exist_ok=True)
    for k, v in store.dump(qg).items():
        (d / k).write_bytes(v)
    return store.load(d)


@pytest.mark.parametrize("case", ["demo", "vit_digits", "kws_transformer", "tflite_vww"])
def test_qgraph_store_roundtrip_is_exact(case, tmp_path) -> None:
    if case == "tflite_vww":  # an int8 .tflite import: its own parameter types
        from conftest import MODELS, require
        from microq.tflite_import import import_tflite

        qg = import_tflite(require(MODELS / "tflite" / "vww_96_int8.tflite", "MLPerf vww01"))
        _same(qg, _roundtrip(qg, tmp_path))
        return
    if case == "demo":
        model, calib = DEMO, CALIB
    elif case == "vit_digits":
        model, calib = TRANSFORMERS / "vit_digits.onnx", TRANSFORMERS / "vit_digits_calib.npz"
    else:
        model = TRANSFORMERS / "kws_transformer.onnx"
        calib = TRANSFORMERS / "kws_transformer_data.npz"
    data = {k: v[:16] for k, v in np.load(calib).items() if k != "label"}
    _, qg = api.quantize_model(model, data)
    back = _roundtrip(qg, tmp_path)
    _same(qg, back)
    from microq.codegen import store

    assert store.dump(back) == store.dump(qg)  # deterministic bytes (no zip timestamps)
    kernels = {n.kernel for n in qg.nodes}
    if case != "demo":
        assert {"batch_matmul", "layernorm", "softmax"} <= kernels


def test_compile_writes_no_pickle_and_compare_reads_the_store(demo_dir) -> None:
    files = sorted(p.name for p in (demo_dir / ".microq").iterdir())
    assert files == ["files.json", "generated", "qgraph.json", "qgraph.npz"]
    with np.load(demo_dir / ".microq" / "qgraph.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    assert api.load_qgraph(demo_dir).outputs == ["probs"]


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_old_pickle_folder_is_refused_without_unpickling(demo_dir, tmp_path) -> None:
    """A folder with only .microq/qgraph.pickle (an older microq, or a crafted one) is refused
    with one line, and the pickle is never loaded (its payload would create a file)."""
    import pickle

    d = _copy(demo_dir, tmp_path / "old")
    for f in ("qgraph.json", "qgraph.npz"):
        (d / ".microq" / f).unlink()
    witness = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (witness,))

    (d / ".microq" / "qgraph.pickle").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(MicroqError, match="older microq.*compile the model again") as e:
        api.load_qgraph(d)
    assert "\n" not in str(e.value)
    with pytest.raises(MicroqError, match="older microq"):
        api.compare(DEMO, d, CALIB)
    assert not witness.exists()


@pytest.mark.parametrize("case", ["bad_json", "foreign_class", "object_array", "wrong_format",
                                  "missing_array", "deep_nesting"])
def test_damaged_qgraph_store_is_a_one_line_error(case, demo_dir, tmp_path) -> None:
    d = _copy(demo_dir, tmp_path / "dmg")
    j = d / ".microq" / "qgraph.json"
    doc = json.loads(j.read_text())
    if case == "bad_json":
        j.write_text("{not json")
    elif case == "foreign_class":
        doc["graph"]["$type"] = "Path"
        j.write_text(json.dumps(doc))
    elif case == "object_array":
        np.savez(d / ".microq" / "qgraph.npz", a0=np.array([{"x": 1}], dtype=object))
    elif case == "wrong_format":
        doc["format"] = 99
        j.write_text(json.dumps(doc))
    elif case == "missing_array":
        np.savez(d / ".microq" / "qgraph.npz")
    else:
        j.write_text('{"format": 1, "graph": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(MicroqError, match="compile the model again") as e:
        api.load_qgraph(d)
    assert "\n" not in str(e.value)


# ---- 4. --name collisions ----------------------------------------------------------------------

RESERVED_NAMES = ["mq_conv", "mq_requant", "mq_types", "MQ_fc", "mq", "stdint", "stddef",
                  "string", "int", "static", "_net", "harness", "startup", "main", "con",
                  "n" * 65, "caf\u00e9", "my-model"]


@pytest.mark.parametrize("name", RESERVED_NAMES)
def test_reserved_model_name_is_refused_before_any_work(name, tmp_path, monkeypatch) -> None:
    import microq.api as api_mod

    def no_quantize(*a, **k):
        raise AssertionError("quantized before the name was checked")

    monkeypatch.setattr(api_mod, "quantize_model", no_quantize)
    with pytest.raises(MicroqError, match="choose another --name") as e:
        api.compile_model(DEMO, CALIB, tmp_path / "out", name=name)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["mq_conv", "stdint"])
def test_cli_reserved_name_exits_nonzero_with_one_line(name, tmp_path) -> None:
    import subprocess

    r = subprocess.run([sys.executable, "-m", "microq", "compile", str(DEMO), "--calib",
                        str(CALIB), "-o", str(tmp_path / "out"), "--name", name, "--no-size"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and name in lines[0] and "--name" in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


def test_ordinary_names_still_work(tmp_path) -> None:
    from microq.codegen.emit import check_name

    for name in ["net", "kws_v2", "Net", "model_mq", "mqtt", "digits", "int8net", "x"]:
        check_name(name)


# ---- 5. graph outputs with no producer ---------------------------------------------------------


def _relu_model(outputs: list[str], inits=None) -> onnx.ModelProto:
    return make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 4)}, outputs, inits)


@pytest.mark.parametrize("case", ["dangling", "only_dangling", "constant", "no_outputs"])
def test_output_without_producer_is_refused(case, tmp_path) -> None:
    outputs, inits, needle = {
        "dangling": (["y", "ghost"], None, "'ghost'"),
        "only_dangling": (["ghost"], None, "'ghost'"),
        "constant": (["y", "c"], {"c": np.ones((1, 4), np.float32)}, "'c'"),
        "no_outputs": ([], None, "no outputs"),
    }[case]
    path = tmp_path / f"{case}.onnx"
    onnx.save(_relu_model(outputs, inits), path)
    with pytest.raises(MicroqError) as e:
        api.compile_model(path, {"x": _x(8)}, tmp_path / "out", name="m")
    msg = str(e.value)
    assert "\n" not in msg and needle in msg and str(path) in msg, msg
    assert not (tmp_path / "out").exists()


def test_emit_refuses_a_qgraph_output_nobody_computes(tmp_path) -> None:
    from microq import qir
    from microq.codegen import emit

    q = qir.QParams(0.1, 0)
    g = qir.QGraph("g", {"x": qir.QTensor("x", (1, 4), q), "z": qir.QTensor("z", (1, 4), q)},
                   [], ["x"], ["z"])
    with pytest.raises(MicroqError, match="'z' is produced by no node"):
        emit(g, tmp_path / "out", "m")
    assert not (tmp_path / "out").exists()


def test_graph_input_that_is_also_an_output_is_copied_exactly(tmp_path) -> None:
    """An input listed as an output too (["y", "x"]): the C copies it into its output pointer;
    equal to the quantized input and the integer reference."""
    path = tmp_path / "io.onnx"
    onnx.save(_relu_model(["y", "x"]), path)
    res = api.compile_model(path, {"x": _x(16)}, tmp_path / "out", name="m")
    assert [o["name"] for o in res.meta["outputs"]] == ["y", "x"]
    m = api.load(tmp_path / "out")
    q = m.quantize_input("x", _x(16)[:5])
    got = m.run_int8({"x": q})
    assert np.array_equal(got["x"], q)
    for i in range(5):
        want = run_int(res.qgraph, {"x": q[i : i + 1]})
        assert np.array_equal(got["y"][i], np.asarray(want["y"]).reshape(-1)), i


# ---- 6. one error vocabulary: user mistakes are one-line errors --------------------------------


def _cli(*args, **kw):
    import subprocess

    return subprocess.run([sys.executable, "-m", "microq", *map(str, args)], capture_output=True,
                          text=True, timeout=300, **kw)


def _one_line(r, *needles) -> str:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", ["folder", "missing_folder", "proc"])
def test_quantize_unwritable_output_is_a_user_error(case, tmp_path) -> None:
    if case == "proc" and not Path("/proc/self").exists():
        pytest.skip("needs Linux /proc")
    out = {"folder": tmp_path, "missing_folder": tmp_path / "no" / "m.onnx",
           "proc": Path("/proc/m.int8.onnx")}[case]
    r = _cli("quantize", DEMO, "--calib", CALIB, "-o", out)
    _one_line(r, str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temp file left


def test_quantize_writes_atomically(tmp_path) -> None:
    out = tmp_path / "m.int8.onnx"
    r = _cli("quantize", DEMO, "--calib", CALIB, "-o", out)
    assert r.returncode == 0, r.stderr
    onnx.checker.check_model(onnx.load(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx"]


@pytest.mark.parametrize("args", [["inspect", DEMO], ["inspect", "--json", DEMO], ["--help"]],
                         ids=["inspect", "inspect_json", "help"])
def test_broken_pipe_exits_silently(args) -> None:
    """`microq inspect m.onnx | head`: the reader is gone before microq writes; no message."""
    import os
    import subprocess

    rd, wr = os.pipe()
    os.close(rd)
    try:
        r = subprocess.run([sys.executable, "-m", "microq", *map(str, args)], stdout=wr,
                           stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(wr)
    assert r.stderr.strip() == "", r.stderr
    assert r.returncode == 1


def test_profile_into_head_1_ends_without_an_error(demo_dir) -> None:
    """`microq profile DIR --target cortex-m4 | head -1`: the reader leaves after the first
    line; microq stops quietly (it used to end with "internal error (BrokenPipeError)")."""
    import shutil
    import subprocess

    from conftest import IN_CI

    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        assert not IN_CI, "CI needs qemu-system-arm and arm-none-eabi-gcc"
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    p = subprocess.Popen([sys.executable, "-m", "microq", "profile", str(demo_dir), "--target",
                          "cortex-m4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()  # what head -1 does
    err = p.stderr.read().decode()
    p.wait(timeout=300)
    assert b"cortex-m4" in first and b"instructions" in first, first
    assert err.strip() == "", err
    assert p.returncode == 1


def test_run_with_an_ndarray_instead_of_a_dict(demo_dir) -> None:
    with pytest.raises(MicroqError, match=r"dict.*not ndarray.*'input'") as e:
        api.run(demo_dir, np.zeros((1, 1, 8, 8), np.float32))
    assert "\n" not in str(e.value)
    m = api.load(demo_dir)
    with pytest.raises(MicroqError, match="must be a dict"):
        m.run_int8(np.zeros((1, 8, 8, 1), np.int8))


def test_data_file_that_is_not_npz_never_suggests_unpickling(tmp_path) -> None:
    r = _cli("compile", DEMO, "--calib", DEMO, "-o", tmp_path / "out", "--no-size")
    line = _one_line(r, str(DEMO), "never loads")
    assert "allow_pickle" not in line and "pickle.load" not in line


# ---- 7. a kill inside the folder swap never leaves -o missing; leftovers are cleaned up --------

KILL_SCRIPT = r"""
import os, shutil, signal, sys
from pathlib import Path
from microq.codegen import swap
from microq.codegen.emit import write_folder

target, point = Path(sys.argv[1]), sys.argv[2]
write_folder(target, {"a.c": b"old\n"})           # the folder a new compile replaces
with open(target / "main.c", "w") as f:                 # the user's own file: always kept
    f.write("int main(void) { return 0; }\n")
new = {f"f{i}.c": b"new\n" for i in range(5)}
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if point == "writing":                                  # the 3rd file of the new folder
    real, n = Path.write_bytes, [0]
    def write_bytes(self, data):
        n[0] += 1
        if n[0] == 3:
            die()
        return real(self, data)
    Path.write_bytes = write_bytes
elif point == "between_renames":                        # no RENAME_EXCHANGE: old moved aside
    swap._exchange = lambda a, b: False
    real_replace = os.replace
    def replace(a, b):
        real_replace(a, b)
        die()
    swap.os.replace = replace
elif point == "after_exchange":                         # new in place, old not yet deleted
    swap.shutil.rmtree = lambda *a, **k: die()
elif point == "carrying":                               # the user's file linked into the new one
    real_link = os.link
    def link(a, b):
        real_link(a, b)
        die()
    swap.os.link = link
write_folder(target, new)
"""


def _siblings(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.name != target.name)


@pytest.mark.parametrize("point", ["writing", "carrying", "between_renames", "after_exchange"])
def test_kill_inside_folder_swap_never_loses_the_folder(point, tmp_path) -> None:
    """SIGKILL at each step of the swap; then the next write (or a reader) finds the old or
    the new folder complete, the user's own main.c in it, and no hidden folder is left."""
    import os
    import subprocess

    target = tmp_path / "out" / "net"
    target.parent.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(api.__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(target), point], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    from microq.codegen import swap

    if point == "after_exchange" and sys.platform.startswith("linux"):
        assert (target / "f4.c").is_file()  # atomic exchange: the new folder, at once
    if point in ("writing", "carrying"):
        assert sorted(p.name for p in target.iterdir()) == [".microq", "a.c", "main.c"]
    assert _siblings(target), "the kill should have left a hidden folder"
    swap.recover(target)  # what the next compile or reader runs first
    files = sorted(p.name for p in target.iterdir() if p.is_file() and p.name != "main.c")
    assert files in (["a.c"], [f"f{i}.c" for i in range(5)]), files
    assert (target / "main.c").read_text() == "int main(void) { return 0; }\n"
    assert (target / ".microq" / "generated").is_file()
    assert _siblings(target) == []


def _dead_pid() -> int:
    import subprocess

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_reader_recovers_a_folder_left_missing_by_a_killed_compile(demo_dir, tmp_path) -> None:
    """The state a kill between the two renames leaves (target moved aside, new folder
    complete): `microq run` puts the old folder back and removes the hidden ones."""
    import shutil

    target = tmp_path / "net"
    pid = _dead_pid()
    shutil.copytree(demo_dir, tmp_path / f".net.microq.{pid}.0a1b2c3d.old")
    shutil.copytree(demo_dir, tmp_path / f".net.microq.{pid}.4e5f6a7b.new")
    out = api.run(target, {"input": np.zeros((1, 1, 8, 8), np.float32)})
    assert out["probs"].shape == (1, 10)
    assert _siblings(target) == []


def test_stale_hidden_folders_are_cleaned_only_when_they_are_microqs(tmp_path) -> None:
    """Hidden siblings of -o: removed if microq's (name pattern + marker + dead writer, or an
    old version's mkdtemp name older than 10 min); a live writer's or a user's are kept."""
    import os

    from microq.codegen.emit import write_folder

    dead = _dead_pid()

    def folder(name: str, marker: bool = True, old: bool = False) -> Path:
        d = tmp_path / name
        (d / ".microq").mkdir(parents=True)
        (d / "x.c").write_text("x\n")
        if marker:
            (d / ".microq" / "generated").write_text("microq\n")
        if old:
            os.utime(d, (1_000_000_000, 1_000_000_000))
        return d

    folder(f".net.microq.{dead}.00aa11bb.new")  # a killed compile: removed
    folder(f".net.microq.{dead}.22cc33dd.old")  # its backup, target present: removed
    folder(".net.k3j4h5g6.tmp", old=True)  # microq <= 0.1 mkdtemp leftover: removed
    folder(".net.k3j4h5g6.old", old=True)
    folder(".net.recent00.tmp")  # an old version's, too recent to judge: kept
    folder(".net.microq.1.44ee55ff.new")  # pid 1 is alive: a writer at work, kept
    folder(f".net.microq.{dead}.66aa77bb.new", marker=False)  # not microq's: kept
    folder(".other.microq.1.00000000.new")  # another target's: kept
    write_folder(tmp_path / "net", {"a.c": b"a\n"})
    assert _siblings(tmp_path / "net") == sorted([
        ".net.recent00.tmp", ".net.microq.1.44ee55ff.new",
        f".net.microq.{dead}.66aa77bb.new", ".other.microq.1.00000000.new"])


# ---- 8. recompiling keeps every file the user added to the folder (issue 10) ----------------

def _user_tree(target: Path) -> None:
    import os

    (target / "main.c").write_text("int main(void) { return 0; }\n")
    (target / "build" / "obj").mkdir(parents=True)
    (target / "build" / "obj" / "net.o").write_bytes(b"\x7fELF...")
    os.utime(target / "build" / "obj" / "net.o", (1_600_000_000, 1_600_000_000))
    (target / "notes").mkdir()  # an empty folder of the user's
    (target / "example" / "mine.c").write_text("/* next to microq's example */\n")
    os.symlink("main.c", target / "link.c")


def test_recompile_keeps_user_files_and_drops_files_microq_no_longer_writes(tmp_path) -> None:
    from microq.codegen.emit import write_folder

    target = tmp_path / "net"
    assert write_folder(target, {"a.c": b"a\n", "example/main.c": b"ex\n"}) == []
    _user_tree(target)
    kept = write_folder(target, {"b.c": b"b\n", "example/main.c": b"ex2\n"})
    expect = ["build/obj/net.o", "example/mine.c", "link.c", "main.c", "notes/"]
    assert kept == expect
    assert not (target / "a.c").exists()  # microq's, no longer written: removed
    assert (target / "b.c").read_bytes() == b"b\n"
    assert (target / "example" / "main.c").read_bytes() == b"ex2\n"
    assert (target / "main.c").read_text().startswith("int main")
    assert (target / "build" / "obj" / "net.o").read_bytes() == b"\x7fELF..."
    assert (target / "build" / "obj" / "net.o").stat().st_mtime == 1_600_000_000  # make: no rebuild
    assert (target / "notes").is_dir() and (target / "link.c").is_symlink()
    assert (target / "example" / "mine.c").is_file()
    assert write_folder(target, {"b.c": b"b\n"}) == expect  # and again: the list holds
    assert not (target / "example" / "main.c").exists() and (target / "example" / "mine.c").exists()
    assert _siblings(target) == []


def test_recompile_refuses_to_overwrite_a_user_file_it_would_now_write(tmp_path) -> None:
    from microq.codegen.emit import write_folder

    target = tmp_path / "net"
    write_folder(target, {"a.c": b"a\n"})
    (target / "b.c").write_text("the user's\n")
    (target / "src").write_text("a file where microq needs a folder\n")
    with pytest.raises(MicroqError, match=r"b\.c: microq did not write it") as e:
        write_folder(target, {"b.c": b"b\n"})
    assert "\n" not in str(e.value)
    with pytest.raises(MicroqError, match=r"src: microq did not write it"):
        write_folder(target, {"src/x.c": b"x\n"})
    assert (target / "b.c").read_text() == "the user's\n" and (target / "a.c").is_file()
    assert _siblings(target) == []


def test_recompile_of_an_older_microq_folder_without_a_file_list_keeps_the_rest(tmp_path) -> None:
    """A folder from before the list: only what the new compile writes is microq's."""
    from microq.codegen.emit import write_folder

    target = tmp_path / "net"
    (target / ".microq").mkdir(parents=True)
    (target / ".microq" / "generated").write_text("microq\n")
    (target / "net.c").write_text("old\n")
    (target / "main.c").write_text("mine\n")
    assert write_folder(target, {"net.c": b"new\n"}) == ["main.c"]
    assert (target / "net.c").read_text() == "new\n" and (target / "main.c").read_text() == "mine\n"


def test_compile_cli_says_how_many_user_files_it_kept(demo_dir, tmp_path) -> None:
    import shutil

    out = tmp_path / "net"
    shutil.copytree(demo_dir, out, symlinks=True)
    (out / "main.c").write_text("int main(void) { return 0; }\n")
    (out / "build").mkdir()
    (out / "build" / "libnet.a").write_bytes(b"!<arch>\n")
    r = _cli("compile", DEMO, "--calib", CALIB, "-o", out, "--name", "net", "--no-size")
    assert r.returncode == 0, r.stderr
    assert f"kept 2 files of yours in {out}/: build/, main.c" in r.stdout
    assert (out / "main.c").is_file() and (out / "build" / "libnet.a").is_file()
    assert (out / "net.c").is_file()
