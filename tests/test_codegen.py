"""Codegen end to end: hand-built quantized graphs -> C folder -> gcc strict / cffi host run,
compared bit for bit with the integer executor (ref.int_exec)."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from microq import qir
from microq.errors import MicroqError
from microq.ref.arith import quantize_multiplier

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


# ---- hand-built graphs ------------------------------------------------------------------


class Builder:
    """Appends nodes with plausible random params (fixed seed) to a QGraph."""

    def __init__(self, name: str, seed: int):
        self.rng = np.random.default_rng(seed)
        self.g = qir.QGraph(name, {}, [], [], [])

    def tensor(self, name, shape, scale=None, zp=None, const=None):
        scale = float(self.rng.uniform(0.02, 0.1)) if scale is None else scale
        zp = int(self.rng.integers(-20, 20)) if zp is None else zp
        self.g.tensors[name] = qir.QTensor(name, tuple(shape), qir.QParams(scale, zp), const)
        return name

    def input(self, name, shape, perm=None, logical=None):
        self.g.inputs.append(self.tensor(name, shape))
        if perm is not None:
            self.g.input_perm[name] = perm
            self.g.logical_shapes[name] = logical
        return name

    def node(self, kernel, inputs, out, shape, params, scale=None, zp=None):
        q = self.g.tensors[inputs[0]].q
        if kernel in ("max_pool", "avg_pool", "concat", "pad", "transpose", "reshape"):
            scale, zp = q.scale, q.zero_point  # these kernels keep quantization
        if kernel == "softmax":
            scale, zp = 1 / 256, -128
        self.tensor(out, shape, scale, zp)
        name = f"{kernel}_{len(self.g.nodes)}"
        self.g.nodes.append(qir.QNode(name, kernel, list(inputs), [out], params, [f"onnx_{name}"]))
        return out

    def q(self, t):
        return self.g.tensors[t].q

    def conv(self, x, out, cout, k, stride=1, pad=0, depthwise=False):
        n, h, w, cin = self.g.tensors[x].shape
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        fshape = (1, k, k, cout) if depthwise else (cout, k, k, cin)
        taps = k * k * (1 if depthwise else cin)
        filt = self.rng.integers(-127, 128, fshape).astype(np.int8)
        s_out = float(self.rng.uniform(0.05, 0.2))
        s_in = self.q(x).scale
        s_w = 0.6 / (np.sqrt(taps) * 127) * s_out / s_in * self.rng.uniform(0.5, 2.0, cout)
        mult, shift = zip(*(quantize_multiplier(s_in * sw / s_out) for sw in s_w))
        zp = int(self.rng.integers(-10, 10))
        p = qir.ConvParams(
            stride,
            stride,
            pad,
            pad,
            1,
            1,
            -self.q(x).zero_point,
            zp,
            -128,
            127,
            cout // cin if depthwise else 1,
            np.array(mult, np.int32),
            np.array(shift, np.int32),
            filt,
            self.rng.integers(-2000, 2000, cout).astype(np.int32),
        )
        kernel = "depthwise_conv2d" if depthwise else "conv2d"
        return self.node(kernel, [x], out, (n, oh, ow, cout), p, s_out, zp)

    def fc(self, x, out, n_out):
        shape = self.g.tensors[x].shape
        k = shape[-1]
        filt = self.rng.integers(-127, 128, (n_out, k)).astype(np.int8)
        s_out = float(self.rng.uniform(0.05, 0.2))
        real = 0.6 / (np.sqrt(k) * 127) * self.rng.uniform(0.5, 2.0, n_out)
        mult, shift = zip(*(quantize_multiplier(r) for r in real))
        zp = int(self.rng.integers(-10, 10))
        p = qir.FCParams(
            -self.q(x).zero_point,
            0,
            zp,
            -128,
            127,
            np.array(mult, np.int32),
            np.array(shift, np.int32),
            filt,
            self.rng.integers(-500, 500, n_out).astype(np.int32),
        )
        return self.node("fully_connected", [x], out, (*shape[:-1], n_out), p, s_out, zp)

    def pool(self, kernel, x, out, k, stride):
        n, h, w, c = self.g.tensors[x].shape
        p = qir.PoolParams(k, k, stride, stride, 0, 0, 0, 0, 0, 0, 0, -128, 127)
        shape = (n, (h - k) // stride + 1, (w - k) // stride + 1, c)
        return self.node(kernel, [x], out, shape, p)

    def add(self, kernel, a, b, out, shape):
        s1, s2, s_out = self.q(a).scale, self.q(b).scale, float(self.rng.uniform(0.05, 0.15))
        twice_max = 2 * max(s1, s2)
        m1, sh1 = quantize_multiplier(s1 / twice_max)
        m2, sh2 = quantize_multiplier(s2 / twice_max)
        mo, sho = quantize_multiplier(twice_max / ((1 << 20) * s_out))
        zp = int(self.rng.integers(-10, 10))
        p = qir.AddParams(
            -self.q(a).zero_point,
            m1,
            sh1,
            -self.q(b).zero_point,
            m2,
            sh2,
            20,
            zp,
            mo,
            sho,
            -128,
            127,
        )
        return self.node(kernel, [a, b], out, shape, p, s_out, zp)

    def mul(self, a, b, out, shape):
        s_out = 0.5 * self.q(a).scale * self.q(b).scale * 100
        m, sh = quantize_multiplier(self.q(a).scale * self.q(b).scale / s_out)
        p = qir.MulParams(-self.q(a).zero_point, -self.q(b).zero_point, 3, m, sh, -128, 127)
        return self.node("mul", [a, b], out, shape, p, s_out, 3)

    def lut(self, x, out):
        table = np.clip(np.arange(-128, 128) // 2 + 20, -128, 127).astype(np.int8)
        return self.node("lut", [x], out, self.g.tensors[x].shape, qir.LutParams(table, "x/2+20"))

    def requantize(self, x, out):
        s_out = self.q(x).scale * 0.7
        m, sh = quantize_multiplier(self.q(x).scale / s_out)
        p = qir.RequantizeParams(-self.q(x).zero_point, 5, m, sh, -128, 127)
        return self.node("requantize", [x], out, self.g.tensors[x].shape, p, s_out, 5)

    def softmax(self, x, out):
        m, left = quantize_multiplier(min(self.q(x).scale * 2**26, 2**31 - 1))
        diff_min = -int(np.floor(31 * 2**26 / 2**left))
        p = qir.SoftmaxParams(m, left, diff_min)
        return self.node("softmax", [x], out, self.g.tensors[x].shape, p)


def chain_graph() -> qir.QGraph:
    """conv -> lut -> max_pool -> depthwise -> add (residual) -> global avg -> reshape -> fc ->
    softmax, with an NCHW ONNX input."""
    b = Builder("chain", 1)
    x = b.input("input_1", (1, 8, 8, 3), perm=(0, 2, 3, 1), logical=(1, 3, 8, 8))
    t = b.conv(x, "conv", 8, 3, pad=1)
    t = b.lut(t, "act")
    p = b.pool("max_pool", t, "pool", 2, 2)
    d = b.conv(p, "dw", 8, 3, pad=1, depthwise=True)
    t = b.add("add", p, d, "res", (1, 4, 4, 8))
    t = b.pool("avg_pool", t, "gap", 4, 1)
    t = b.node("reshape", [t], "flat", (1, 8), qir.ReshapeParams((1, 8)))
    t = b.fc(t, "logits", 10)
    b.g.outputs.append(b.softmax(t, "probs"))
    return b.g


def data_graph() -> qir.QGraph:
    """requantize, mul by a broadcast const, concat, pad, transpose, sub, strided conv."""
    b = Builder("data", 2)
    x = b.input("x", (1, 4, 4, 3))
    r = b.requantize(x, "rq")
    c = b.tensor("scale_c", (3,), 0.05, 0, const=np.array([10, -20, 30], np.int8))
    m = b.mul(x, c, "m", (1, 4, 4, 3))
    d = b.add("sub", r, m, "d", (1, 4, 4, 3))
    t = b.node("concat", [r, d, r], "cat", (1, 4, 4, 9), qir.ConcatParams(3))
    t = b.node("pad", [t], "padded", (1, 6, 7, 9), qir.PadParams((0, 1, 2, 0), (0, 1, 1, 0), -7))
    t = b.conv(t, "conv", 4, 3, stride=2)
    b.g.outputs.append(
        b.node("transpose", [t], "y", (1, 4, 2, 3), qir.TransposeParams((0, 3, 1, 2)))
    )
    return b.g


def multi_graph() -> qir.QGraph:
    """Two inputs, three outputs; output 1 is a reshape of output 0 (a copy), fc on rows."""
    b = Builder("multi", 3)
    a = b.input("a", (1, 4, 4, 4))
    v = b.input("b", (1, 1, 1, 4))
    s = b.add("add", a, v, "s", (1, 4, 4, 4))
    c = b.conv(s, "c", 2, 1)
    y1 = b.node("reshape", [c], "y1", (1, 32), qir.ReshapeParams((1, 32)))
    f = b.fc(s, "f", 3)
    b.g.outputs += [c, y1, f]
    return b.g


def passthrough_graph() -> qir.QGraph:
    """A reshape of the input is the output: no kernel, one copy."""
    b = Builder("passthrough", 4)
    x = b.input("x", (1, 2, 3))
    b.g.outputs.append(b.node("reshape", [x], "y", (1, 6), qir.ReshapeParams((1, 6))))
    return b.g


LONG_NAME = "block/" * 20 + "out"


def clash_graph() -> qir.QGraph:
    """Tensor names that sanitize to one C identifier ("a/b", "a.b", "a_b"), a non-ASCII one,
    one longer than the identifier limit and one that is only punctuation."""
    b = Builder("clash", 5)
    x = b.input("in put", (1, 6, 6, 3))
    t1 = b.conv(x, "a/b", 4, 3, pad=1)
    t2 = b.conv(x, "a.b", 4, 1)
    t = b.add("add", t1, t2, "a_b", (1, 6, 6, 4))
    t = b.conv(t, LONG_NAME, 4, 3)
    t = b.lut(t, "gr\u00fc\u00dfe")
    b.g.outputs.append(b.requantize(t, "/-/"))
    return b.g


GRAPHS = {
    "chain": chain_graph,
    "clash": clash_graph,
    "data": data_graph,
    "multi": multi_graph,
    "passthrough": passthrough_graph,
}


# ---- helpers ------------------------------------------------------------------------------


def _emit(g: qir.QGraph, out: Path, command: str = "microq compile test.onnx"):
    from microq.codegen import emit

    return emit(g, out, g.name, command=command)


def _random_feeds(g: qir.QGraph, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        t: rng.integers(-128, 128, (n, *g.tensors[t].shape[1:])).astype(np.int8) for t in g.inputs
    }


def assert_equal_int8(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if not np.array_equal(got, want):
        idx = tuple(int(i) for i in np.argwhere(got != want)[0])
        raise AssertionError(f"{what}: first mismatch at {idx}: C {got[idx]} != ref {want[idx]}")


@pytest.fixture(scope="module", params=sorted(GRAPHS))
def emitted(request, tmp_path_factory):
    g = GRAPHS[request.param]()
    out = tmp_path_factory.mktemp(request.param) / g.name
    summary = _emit(g, out)
    return g, out, summary


# ---- tests --------------------------------------------------------------------------------


def test_emit_is_deterministic(emitted, tmp_path):
    g, out, _ = emitted
    again = tmp_path / g.name
    _emit(GRAPHS[g.name](), again)  # a freshly built, equal graph
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(out, again, names, shallow=False)
    assert mismatch == [] and errors == [], f"differing files: {mismatch + errors}"


def test_folder_compiles_standalone_strict(emitted, tmp_path):
    _, out, _ = emitted
    gcc = shutil.which("gcc")
    assert gcc, "gcc is required"
    srcs = sorted(str(p) for p in out.glob("*.c"))
    r = subprocess.run(
        [gcc, *STRICT, "-I", str(out), "-c", *srcs],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    objs = sorted(p.name for p in tmp_path.glob("*.o"))
    assert objs == sorted(Path(s).with_suffix(".o").name for s in srcs)


def test_folder_holds_only_needed_runtime(emitted):
    g, out, _ = emitted
    kernels = {n.kernel for n in g.nodes}
    present = {p.name for p in out.iterdir()}
    assert {"mq_types.h", "mq_requant.h", f"{g.name}.h", f"{g.name}.json"} <= present
    assert ("mq_conv.c" in present) == bool(kernels & {"conv2d", "depthwise_conv2d"})
    assert ("mq_softmax.c" in present) == ("softmax" in kernels)
    assert ("mq_tensor.c" in present) == bool(kernels & {"concat", "pad", "transpose"})
    assert ("mq_pool.c" in present) == bool(kernels & {"max_pool", "avg_pool"})
    assert ("mq_fc.c" in present) == ("fully_connected" in kernels)


def test_host_run_equals_int_exec(emitted):
    from microq.ref.int_exec import run_int
    from microq.runtime.host import HostModel

    g, out, _ = emitted
    model = HostModel.load(out)
    feeds = _random_feeds(g, 4, seed=7)
    got = model.run_int8(feeds)
    assert sorted(got) == sorted(g.outputs)
    for i in range(4):
        want = run_int(g, {k: v[i : i + 1] for k, v in feeds.items()})
        for name in g.outputs:
            assert_equal_int8(
                got[name][i : i + 1], want[name], f"{g.name} output {name} sample {i}"
            )
    # not constant: the test would not notice a kernel that writes nothing
    assert any(len(np.unique(v)) > 1 for v in got.values())


def test_call_sites_name_buffers_after_their_tensors(tmp_path):
    """invoke passes each activation as a t_<sanitized name> pointer declared once, after a
    comment with the real name; clashing names get _2, _3 in plan order; no call site spells
    an arena offset."""
    import re

    from microq.names import is_c_identifier

    g = clash_graph()
    out = tmp_path / g.name
    _emit(g, out)
    src = (out / "clash.c").read_text()
    decls = re.findall(r"^    (?:const )?int8_t \*const (\w+) = (.+);$", src, re.M)
    names = [n for n, _ in decls]
    assert names == ["t_in_put", "t_a_b", "t_a_b_2", "t_a_b_3", ("t_" + "block_" * 8)[:48],
                     "t_gr_e", "t"], names
    assert all(is_c_identifier(n) and len(n) <= 48 for n in names)
    assert dict(decls)["t_in_put"] == "inputs[0]" and dict(decls)["t"] == "outputs[0]"
    assert all(re.fullmatch(r"arena \+ B\d+_OFFSET", v) for n, v in decls[1:-1])
    for real, n in [("a/b", "t_a_b"), ("a.b", "t_a_b_2"), ("a_b", "t_a_b_3"), ("/-/", "t")]:
        assert re.search(rf'/\* "{re.escape(real)}" \([^)]*\) \*/\n    [^\n]* {n} = ', src), real
    body = src[src.index("{", src.index("_invoke_multi_with(")):]
    calls = [line for line in body.splitlines() if "status = " in line]
    assert calls and not any("arena" in line or "inputs[" in line for line in calls)
    for n in names:  # every declared pointer is used
        assert len(re.findall(rf"\b{n}\b", body)) >= 2, n


def test_weight_arrays_carry_shape_and_layout_comments(tmp_path):
    g = chain_graph()
    out = tmp_path / g.name
    _emit(g, out)
    text = (out / "chain_weights.c").read_text()
    conv = next(n for n in g.nodes if n.kernel == "conv2d")
    shape = "".join(f"[{d}]" for d in conv.params.filter.shape)
    assert f"/* filter {shape} int8_t: OHWI, per-channel scales */\nconst int8_t chain_L0_filter[" \
        in text
    assert "/* filter [1][3][3][8] int8_t: 1HWO, O = C_in * ch_mult, per-channel scales */" in text
    assert "/* filter [10][8] int8_t: [out][in], per-channel scales */" in text
    assert "/* multiplier [8] int32_t: per output channel, Q31 M" in text
    assert "/* table [256] int8_t */" in text
    # every array has a comment right above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("const "):
            assert lines[i - 1].endswith("*/"), line


def test_summary_and_metadata(emitted):
    import json

    g, out, summary = emitted
    meta = json.loads((out / f"{g.name}.json").read_text())
    assert meta["arena_size"] == summary.arena_bytes and summary.lower_bound == meta["lower_bound"]
    from microq.codegen.plan import plan_graph

    plan = plan_graph(g)  # in-place overlaps (codegen/overlap.py) may go below the liveness bound
    assert summary.arena_bytes >= (plan.overlap_bound if plan.overlaps else summary.lower_bound)
    assert [l["name"] for l in meta["layers"]] == [n.name for n in g.nodes]
    assert [i["name"] for i in meta["inputs"]] == g.inputs
    assert summary.macs == sum(l.macs for l in summary.layers)
    header = (out / f"{g.name}.h").read_text()
    assert f"#define {g.name.upper()}_ARENA_SIZE {summary.arena_bytes}" in header
    assert f"int {g.name}_invoke_multi(" in header
    single = len(g.inputs) == 1 and len(g.outputs) == 1
    assert (f"int {g.name}_invoke(" in header) == single


def test_chain_counts():
    from microq.codegen.emit import _render, runtime_dir  # noqa: F401
    from microq.codegen.emitters import EMITTERS
    from microq.codegen.layers import Ctx

    g = chain_graph()
    ctx = Ctx(g, "chain", lambda t: "p")
    macs = []
    for i, node in enumerate(g.nodes):
        ctx.index = i
        macs.append(EMITTERS[node.kernel](ctx, node).macs)
    # conv 8x8x8 outputs x 3*3*3 taps; depthwise 4x4x8 x 3*3; fc 8 -> 10
    assert macs == [8 * 8 * 8 * 27, 0, 0, 4 * 4 * 8 * 9, 0, 0, 0, 80, 0]
    bytes_conv = 8 * 27 + 3 * 4 * 8  # filter + bias, multiplier, shift
    code = EMITTERS["conv2d"](Ctx(g, "chain", lambda t: "p"), g.nodes[0])
    assert code.weight_bytes == bytes_conv


def test_header_documents_layout(tmp_path):
    g = chain_graph()
    _emit(g, tmp_path / "chain")
    header = (tmp_path / "chain" / "chain.h").read_text()
    assert "[1, 3, 8, 8]" in header and "[1, 8, 8, 3]" in header
    assert "microq compile test.onnx" in header
    assert "CHAIN_INPUT_SCALE" in header and "CHAIN_OUTPUT_ZERO_POINT (-128)" in header
    src = (tmp_path / "chain" / "chain.c").read_text()
    assert '/* L0 conv2d 3x3 s1 "conv2d_0" <- ONNX: onnx_conv2d_0 */' in src


def test_failed_emission_leaves_no_partial_folder(tmp_path, monkeypatch):
    from microq.codegen import emit

    g = chain_graph()
    target = tmp_path / "chain"
    _emit(g, target)
    def files(d):
        return {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file()}

    before = files(target)

    real = Path.write_bytes
    calls = []

    def failing(self, data):
        calls.append(self)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(MicroqError, match="No space left"):
        emit(multi_graph(), target, "chain")
    monkeypatch.undo()
    assert files(target) == before  # old folder intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain"]  # no temporary left over

    fresh = tmp_path / "fresh"
    monkeypatch.setattr(Path, "write_bytes", failing)
    calls.clear()
    with pytest.raises(MicroqError):
        emit(g, fresh, "chain")
    monkeypatch.undo()
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain"]


def test_unwritable_target_raises(tmp_path):
    g = passthrough_graph()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MicroqError, match="cannot write"):
        _emit(g, blocker / "out")  # parent is a file
    with pytest.raises(MicroqError, match="not a folder"):
        _emit(g, blocker)


@pytest.mark.parametrize("name", ["1model", "my-model", ""])
def test_bad_model_name_raises(tmp_path, name):
    from microq.codegen import emit

    with pytest.raises(MicroqError, match="C identifier"):
        emit(passthrough_graph(), tmp_path / "x", name)


def test_kernel_error_status_is_reported(tmp_path):
    from microq.runtime.host import HostModel

    g = chain_graph()
    out = tmp_path / "chain"
    _emit(g, out)
    src = out / "chain.c"
    # an impossible stride makes the conv kernel refuse its arguments
    text = src.read_text()
    assert "    .stride_h = 1,\n" in text  # one field a line (cformat.struct_def)
    src.write_text(text.replace("    .stride_h = 1,\n", "    .stride_h = 0,\n", 1))
    model = HostModel.load(out)
    with pytest.raises(MicroqError, match="MQ_ERR"):
        model.run_int8(_random_feeds(g, 1, seed=0))


def test_quantize_helpers(emitted):
    from microq.runtime.host import HostModel

    g, out, _ = emitted
    model = HostModel.load(out)
    name = g.inputs[0]
    zp = g.tensors[name].q.zero_point
    model.meta["inputs"][0]["scale"] = 0.25  # a power of two: x / scale is exact, ties stay ties
    model.meta["inputs"][0]["input_perm"] = None
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.3, 1e9, -1e9]) * 0.25
    got = model.quantize_input(name, x)
    want = np.clip(np.array([0, 2, 2, 0, -2, 0, 1e9, -1e9]) + zp, -128, 127)
    assert got.dtype == np.int8 and np.array_equal(got, want.astype(np.int8))  # half to even
    qo = g.tensors[g.outputs[0]].q
    y = model.dequantize_output(g.outputs[0], np.array([qo.zero_point, qo.zero_point + 4], np.int8))
    assert np.allclose(y, [0.0, 4 * qo.scale])
    with pytest.raises(MicroqError, match="no tensor"):
        model.quantize_input("nope", x)


def test_quantize_input_transposes_onnx_layout(tmp_path):
    from microq.codegen import emit
    from microq.runtime.host import HostModel

    g = chain_graph()
    emit(g, tmp_path / "chain", "chain")
    model = HostModel.load(tmp_path / "chain")
    assert model.logical_input_shapes() == {"input_1": (1, 3, 8, 8)}
    x = np.random.default_rng(5).normal(size=(2, 3, 8, 8)).astype(np.float32)
    q = model.quantize_input("input_1", x)
    assert q.shape == (2, 8, 8, 3)
    t = g.tensors["input_1"].q
    want = np.clip(
        np.round(x.transpose(0, 2, 3, 1) / np.float32(t.scale)) + t.zero_point, -128, 127
    )
    assert np.array_equal(q, want.astype(np.int8))


def test_single_rounding_build_matches_reference(tmp_path):
    from microq.codegen import emit
    from microq.ref.int_exec import run_int
    from microq.runtime.host import HostModel

    g = chain_graph()
    emit(g, tmp_path / "chain", "chain", rounding="single")
    model = HostModel.load(tmp_path / "chain")
    assert model.meta["rounding"] == "single"
    feeds = _random_feeds(g, 3, seed=11)
    got = model.run_int8(feeds)["probs"]
    for i in range(3):
        want = run_int(g, {"input_1": feeds["input_1"][i : i + 1]}, rounding="single")["probs"]
        assert_equal_int8(got[i : i + 1], want, f"single rounding sample {i}")


def test_run_int_reports_every_tensor():
    from microq.ref.int_exec import run_int

    g = chain_graph()
    seen = []
    out = run_int(g, _random_feeds(g, 1, seed=3), on_tensor=lambda n, v: seen.append((n, v.shape)))
    assert [n for n, _ in seen] == [node.outputs[0] for node in g.nodes]
    assert all(shape == tuple(g.tensors[n].shape) for n, shape in seen)
    assert out["probs"].dtype == np.int8 and out["probs"].shape == (1, 10)


def test_run_int_rejects_bad_feed():
    from microq.ref.int_exec import run_int

    g = chain_graph()
    with pytest.raises(ValueError, match="input_1"):
        run_int(g, {"input_1": np.zeros((1, 3, 8, 8), np.int8)})  # NCHW instead of NHWC


def test_extra_files_written_in_subfolder(tmp_path):
    from microq.codegen import emit

    emit(passthrough_graph(), tmp_path / "p", "p", extra_files={".microq/blob.bin": b"\x00\x01"})
    assert (tmp_path / "p" / ".microq" / "blob.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(MicroqError, match="relative path"):
        emit(passthrough_graph(), tmp_path / "q", "q", extra_files={"../evil": b""})
    assert not (tmp_path / "q").exists()


def test_emit_replaces_its_own_files_and_keeps_the_users(tmp_path):
    """Recompiling under another name: microq's p.* files go (it no longer writes them), the
    user's main.c stays, and the summary says it was kept."""
    from microq.codegen import emit

    target = tmp_path / "p"
    emit(passthrough_graph(), target, "p")
    (target / "main.c").write_text('#include "q.h"\n')
    s = emit(passthrough_graph(), target, "q")
    assert not (target / "p.c").exists() and not (target / "p.h").exists()
    assert (target / "q.c").exists() and (target / "main.c").read_text() == '#include "q.h"\n'
    assert s.kept == ("main.c",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_emit_never_replaces_a_foreign_folder(tmp_path):
    from microq.codegen import emit

    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(MicroqError, match="did not write"):
        emit(passthrough_graph(), target, "p")
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("L0 add", ["/* L0 add */"]),
        ("a */ b", ["/* a * / b */"]),  # a name cannot end the comment early
        ("x " * 60, ["/*" + " x" * 47, " *" + " x" * 13, " */"]),
        ("n " + "a;" * 60, ["/* n " + "a;" * 46, " * " + "a;" * 14, " */"]),  # breaks after ';'
    ],
    ids=["short", "terminator", "wrap_words", "wrap_semicolons"],
)
def test_comment_lines(text, want):
    from microq.codegen.cformat import comment_lines

    got = comment_lines(text)
    assert got == want
    assert all(len(line) <= 100 for line in got)


def test_wrap_call_aligns_after_paren():
    from microq.codegen.cformat import wrap_call

    args = ", ".join(f"(g_arena.bytes + B{i}_OFFSET)" for i in range(5))
    lines = wrap_call("status = ", f"mq_fn({args})", indent=4)
    assert lines[0].startswith("status = mq_fn((g_arena.bytes + B0_OFFSET), ")
    assert all(line.startswith(" " * len("status = mq_fn(")) for line in lines[1:])
    assert all(4 + len(line) <= 100 for line in lines) and lines[-1].endswith(");")
    assert "".join(line.strip() + " " for line in lines).replace(" ,", ",").count("B") == 5
