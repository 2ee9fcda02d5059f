"""Reports for users: the compile summary and `compare` (float onnxruntime vs int8 C)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import load_arrays, model_inputs
from .errors import MicroqError

LAYER_SAMPLES = 100  # per-layer statistics use at most this many samples


def _printable(s: str) -> str:
    """A model-controlled name as terminal text: control characters (a newline, an ANSI escape
    sequence) are shown escaped, never interpreted."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)


def _table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    cells = [[_printable(str(c)) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(r):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align))

    return "\n".join([fmt(headers), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells])


def _kib(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)"


# --- compile summary ------------------------------------------------------------------------
def summary_json(meta: dict) -> dict:
    layers = meta["layers"]
    return {
        "name": meta["name"],
        "layers": len(layers),
        "macs": int(sum(l.get("macs", 0) for l in layers)),
        "weight_bytes": int(sum(l.get("weight_bytes", 0) for l in layers)),
        "arena_bytes": int(meta["arena_size"]),
        "arena_lower_bound": int(meta["lower_bound"]),
        "inputs": meta["inputs"],
        "outputs": meta["outputs"],
    }


def summary_table(meta: dict) -> str:
    s = summary_json(meta)
    rows = [[i, l["name"], l["kernel"], f"{l.get('macs', 0):,}", f"{l.get('weight_bytes', 0):,}"]
            for i, l in enumerate(meta["layers"])]
    lines = [_table(["#", "layer", "kernel", "MACs", "weight B"], rows, "rllrr"), ""]
    ratio = s["arena_bytes"] / s["arena_lower_bound"] if s["arena_lower_bound"] else 1.0
    lines += [
        f"layers        {s['layers']}",
        f"MACs          {s['macs']:,}",
        f"flash weights {_kib(s['weight_bytes'])}",
        f"RAM arena     {_kib(s['arena_bytes'])}  (liveness lower bound "
        f"{s['arena_lower_bound']:,} B, ratio {ratio:.2f})",
    ]
    return "\n".join(lines)


# --- compare --------------------------------------------------------------------------------
@dataclass
class Stats:
    """Streaming error statistics of an approximation q of a reference r."""

    n: int = 0
    ref2: float = 0.0
    err2: float = 0.0
    q2: float = 0.0
    dot: float = 0.0
    max_abs: float = 0.0

    def add(self, r: np.ndarray, q: np.ndarray, what: str = "tensor") -> None:
        """Accumulate q against r; the shapes must agree exactly (flattening both sides would
        hide a layout bug)."""
        r, q = np.asarray(r, np.float64), np.asarray(q, np.float64)
        if r.shape != q.shape:
            raise MicroqError(f"{what}: the reference has shape {r.shape} but the int8 result "
                              f"{q.shape}; this is a microq bug, please report it")
        r, q = r.ravel(), q.ravel()
        e = r - q
        self.n += r.size
        self.ref2 += float(r @ r)
        self.err2 += float(e @ e)
        self.q2 += float(q @ q)
        self.dot += float(r @ q)
        self.max_abs = max(self.max_abs, float(np.max(np.abs(e))) if e.size else 0.0)

    @property
    def sqnr_db(self) -> float:
        if self.err2 == 0:
            return math.inf
        return 10 * math.log10(self.ref2 / self.err2) if self.ref2 > 0 else -math.inf

    @property
    def cosine(self) -> float:
        d = math.sqrt(self.ref2 * self.q2)
        return self.dot / d if d > 0 else (1.0 if self.err2 == 0 else 0.0)

    def to_json(self) -> dict:
        return {"max_abs_error": self.max_abs, "sqnr_db": _finite(self.sqnr_db),
                "cosine": self.cosine}


def _finite(x: float):
    return x if math.isfinite(x) else (999.0 if x > 0 else -999.0)


@dataclass
class LayerRow:
    """One layer of `compare`: its output quantization and two errors of its int8 output.

    isolated: against the float layer fed the dequantized int8 input (onnxruntime's
    qdq_loss_debug way: this layer's own error); cumulative: against the float model's tensor
    (every earlier layer's error included)."""

    name: str
    kernel: str
    tensor: str
    scale: float
    zero_point: int
    isolated: Stats
    cumulative: Stats
    worst: bool = False

    @property
    def range(self) -> tuple[float, float]:
        """The float range the output covers: [(-128 - zp) * scale, (127 - zp) * scale] in
        int8, [-32768, 32767] * scale for a 16x8 (int16) output."""
        lo, hi = (-32768, 32767) if self.kernel.endswith("_s16") else (-128, 127)
        return (lo - self.zero_point) * self.scale, (hi - self.zero_point) * self.scale

    def to_json(self) -> dict:
        iso = {f"isolated_{k}": v for k, v in self.isolated.to_json().items()}
        return dict(name=self.name, kernel=self.kernel, tensor=self.tensor,
                    **self.cumulative.to_json(), **iso, scale=self.scale,
                    zero_point=self.zero_point, range=list(self.range), worst=self.worst)


WORST = 3  # layers marked as the lowest, by isolated SQNR
POOR_DB = 30.0  # below this isolated SQNR a marked layer is called poor (the project's threshold)
NAME_WIDTH = 32  # layer names longer than this are shortened in the text table and the plot


def short_name(name: str, width: int = NAME_WIDTH) -> str:
    """`name` in at most `width` characters: the start and the end, joined by '..'."""
    if len(name) <= width:
        return name
    head = (width - 2) // 2
    return name[:head] + ".." + name[len(name) - (width - 2 - head):]


@dataclass
class CompareReport:
    samples: int
    outputs: dict[str, Stats] = field(default_factory=dict)
    top1_agreement: dict[str, float] = field(default_factory=dict)
    # of the samples whose top-1 class differs: how many are ties in the int8 output (the float
    # top class has the int8 maximum too; argmax took another class of equal value)
    top1_disagree: dict[str, int] = field(default_factory=dict)
    top1_ties: dict[str, int] = field(default_factory=dict)
    accuracy_float: dict[str, float] = field(default_factory=dict)
    accuracy_int8: dict[str, float] = field(default_factory=dict)
    layers: list[LayerRow] = field(default_factory=list)
    layer_samples: int = 0
    int16_gains: list = field(default_factory=list)  # quant/rules_s16.int16_gains
    int16_layers: list = field(default_factory=list)  # a folder compiled with --int16

    def to_json(self) -> dict:
        """Per layer: max_abs_error / sqnr_db / cosine are cumulative, isolated_* isolated."""
        return {
            "samples": self.samples,
            "outputs": {k: dict(v.to_json(),
                                top1_agreement=self.top1_agreement.get(k),
                                top1_disagreements=self.top1_disagree.get(k),
                                top1_disagreements_int8_ties=self.top1_ties.get(k),
                                accuracy_float=self.accuracy_float.get(k),
                                accuracy_int8=self.accuracy_int8.get(k))
                        for k, v in self.outputs.items()},
            "layer_samples": self.layer_samples,
            "layers": [r.to_json() for r in self.layers],
            "int16_gains": self.int16_gains,
            "int16_layers": self.int16_layers,
        }

    def table(self) -> str:
        """Text report, under ~110 columns: long layer names are shortened and the cosines
        are left to --json."""
        def mark(r: LayerRow) -> str:
            if not r.worst:
                return ""
            return "<- lowest, poor" if r.isolated.sqnr_db < POOR_DB else "<- lowest"

        rows = [[short_name(r.name), r.kernel, f"{r.scale:.4g}",
                 f"[{r.range[0]:.3g}, {r.range[1]:.3g}]", f"{r.isolated.sqnr_db:.1f}",
                 f"{r.isolated.max_abs:.4g}", f"{r.cumulative.sqnr_db:.1f}", mark(r)]
                for r in self.layers]
        poor = sum(1 for r in self.layers if r.isolated.sqnr_db < POOR_DB)
        out = [*textwrap.wrap(
                   f"per layer (int8 reference, bit-exact with the C; first "
                   f"{self.layer_samples} samples). SQNR: vs the float layer fed the "
                   "dequantized int8 input (this layer's own error); cum.: vs the float model "
                   "(all earlier errors too). Cosines: --json.", 100),
               _table(["layer", "kernel", "scale", "range", "SQNR dB", "max abs err",
                       "cum. SQNR dB", ""], rows, "llrrrrrl"),
               f"marked: the {WORST} lowest SQNR; poor: below {POOR_DB:g} dB "
               f"({poor} of {len(self.layers)} layers).", "",
               f"outputs ({self.samples} samples, float onnxruntime vs int8 C):"]
        rows = []
        for k, s in self.outputs.items():
            agree = self.top1_agreement.get(k)
            accf, acci = self.accuracy_float.get(k), self.accuracy_int8.get(k)
            ties = ""
            if self.top1_disagree.get(k):
                ties = (f" ({self.top1_ties.get(k, 0)} of {self.top1_disagree[k]} differing "
                        "are int8 ties)")
            rows.append([k, f"{s.max_abs:.4g}", f"{s.sqnr_db:.1f}", f"{s.cosine:.5f}",
                         "-" if agree is None else f"{100 * agree:.2f}%{ties}",
                         "-" if accf is None else f"{100 * accf:.2f}%",
                         "-" if acci is None else f"{100 * acci:.2f}%"])
        out.append(_table(["output", "max abs err", "SQNR dB", "cosine", "top-1 agree",
                           "float acc", "int8 acc"], rows, "lrrrrrr"))
        if self.int16_layers:
            out += ["", "16x8 layers of this folder (compile --int16): "
                    + ", ".join(self.int16_layers)]
        else:
            out += _int16_lines(self.int16_gains)
        return "\n".join(out)


def _int16_lines(gains: list) -> list[str]:
    """Which layers would gain from `compile --int16` (16x8), by how much."""
    if not gains:
        return ["", "16x8 (compile --int16): no 16x8-capable layer is below 35 dB isolated "
                "SQNR; none is tried."]
    rows = []
    for g in gains:
        if "error" in g:
            rows.append([short_name(g["layer"]), f"{g['isolated_sqnr_db']:.1f}", "-", "-",
                         g["error"][:40]])
            continue
        rows.append([short_name(g["layer"]), f"{g['isolated_sqnr_db']:.1f}",
                     f"{g['output_sqnr_int8_db']:.1f} -> {g['output_sqnr_16x8_db']:.1f}",
                     f"{g['gain_db']:+.1f}", f"{g['int16_bytes']} B int16"])
    best = [g for g in gains if g.get("gain_db", 0) >= 1.0]
    hint = ("try: --int16 " + ",".join(best[0]["layers"])) if best else \
        "no layer gains 1 dB or more from 16x8"
    return ["", "16x8 (compile --int16): output SQNR with the layer and its readers in 16x8 "
            "(re-quantized from this data's ranges):",
            _table(["layer", "iso. SQNR dB", "output SQNR dB", "gain dB", "RAM"], rows,
                   "lrrrl"), hint]


def plot(report: CompareReport, path: str | Path) -> None:
    """SQNR per layer (isolated bars, cumulative line) as a PNG; matplotlib is optional."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MicroqError("--plot needs matplotlib: pip install matplotlib") from None
    names = [short_name(r.name, 24) for r in report.layers]
    # an exact layer (no error: infinite SQNR) gets no bar, only a label
    iso = [r.isolated.sqnr_db if math.isfinite(r.isolated.sqnr_db) else np.nan
           for r in report.layers]
    cum = [r.cumulative.sqnr_db if math.isfinite(r.cumulative.sqnr_db) else np.nan
           for r in report.layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(names) + 2), 4.5))
    x = np.arange(len(names))
    ax.bar(x, iso, color=["tab:red" if r.worst else "tab:blue" for r in report.layers],
           label="isolated (this layer)")
    ax.plot(x, cum, "k.-", label="cumulative (vs float model)")
    for i, v in enumerate(iso):
        if np.isnan(v):
            ax.text(i, 1.0, "exact", ha="center", va="bottom", rotation=90, fontsize=8)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("SQNR (dB)")
    ax.set_title(f"int8 vs float per layer ({report.layer_samples} samples; red: the {WORST} "
                 "lowest isolated SQNR)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside, not on, bars
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100, bbox_inches="tight")  # rotated labels stay inside
    except OSError as e:
        raise MicroqError(f"{path}: cannot write the plot ({e.strerror})") from None
    finally:
        plt.close(fig)


def run_onnxruntime(model: str | Path, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float reference outputs, one sample at a time (models may fix the batch to 1)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MicroqError(f"{model}: onnxruntime cannot load the model ({why})") from None
    names = [o.name for o in sess.get_outputs()]
    n = len(next(iter(data.values())))
    outs: dict[str, list] = {k: [] for k in names}
    for i in range(n):
        res = sess.run(names, {k: v[i : i + 1] for k, v in data.items()})
        for k, r in zip(names, res):
            # one sample as the host runner returns it (runtime.host.sample_shape)
            outs[k].append(r[0] if r.ndim and r.shape[0] == 1 else r)
    return {k: np.stack(v) for k, v in outs.items()}


def compare(model, model_dir, data_path) -> CompareReport:
    from . import api
    from .onnx_import import load_onnx
    from .ref.float_exec import to_physical

    onnx_model = load_onnx(model)  # a one-line error for a missing or damaged file
    qg = api.load_qgraph(model_dir)
    check_model_matches(model, onnx_model, model_dir, qg)
    graph = _float_graph(model, onnx_model)  # unsupported models fail before any run
    arrays = load_arrays(data_path)
    shapes = {k: qg.logical_shapes[k] for k in qg.inputs}
    data = model_inputs(data_path, arrays, shapes)
    n = len(next(iter(data.values())))
    ref = run_onnxruntime(model, data)
    got = api.run(model_dir, data)
    rep = CompareReport(samples=n)
    labels = arrays.get("label")
    for k in qg.outputs:
        s = Stats()
        s.add(ref[k], got[k], f"output '{k}'")
        rep.outputs[k] = s
        r, g = ref[k].reshape(n, -1), got[k].reshape(n, -1)
        if r.shape[1] > 1:
            rep.top1_agreement[k] = float(np.mean(r.argmax(1) == g.argmax(1)))
            differ = np.flatnonzero(r.argmax(1) != g.argmax(1))
            rep.top1_disagree[k] = int(len(differ))
            # an int8 tie: the float model's class also holds the int8 output's maximum
            rep.top1_ties[k] = int(sum(g[i, r[i].argmax()] == g[i].max() for i in differ))
            if labels is not None and len(labels) == n and len(qg.outputs) == 1:
                lab = np.asarray(labels).reshape(n)
                rep.accuracy_float[k] = float(np.mean(r.argmax(1) == lab))
                rep.accuracy_int8[k] = float(np.mean(g.argmax(1) == lab))

    m = min(n, LAYER_SAMPLES)
    rep.layer_samples = m
    feeds = {k: to_physical(graph, k, v[:m]) for k, v in data.items()}
    rounding = api.load_meta(model_dir).get("rounding", "double")
    rep.layers = layer_errors(graph, qg, feeds, rounding)
    rep.int16_layers = [n.name for n in qg.nodes
                        if n.kernel.endswith("_s16") and n.kernel != "requantize_s16"]
    if not rep.int16_layers:  # an all-int8 folder: which layers would gain from 16x8
        from .quant.rules_s16 import int16_gains

        rep.int16_gains = int16_gains(graph, feeds, rep.layers, rounding)
    return rep


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


def check_model_matches(model, onnx_model, model_dir, qg) -> None:
    """The float model must be the one compiled into model_dir: same input names and shapes
    (the batch aside), and every compiled output among its outputs."""
    consts = {i.name for i in onnx_model.graph.initializer}

    def dims(vi) -> tuple:
        return tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or "?"
                     for d in vi.type.tensor_type.shape.dim)[1:]

    have = {i.name: dims(i) for i in onnx_model.graph.input if i.name not in consts}
    want = {k: tuple(qg.logical_shapes[k][1:]) for k in qg.inputs}
    hint = f"compare the model that was compiled into {model_dir}"

    def fmt(d: dict) -> str:
        return ", ".join(f"'{k}' (N, {', '.join(map(str, s))})" for k, s in d.items())

    if have != want:
        raise MicroqError(f"{model}: its inputs {fmt(have)} do not match the inputs of "
                          f"{model_dir}: {fmt(want)}; {hint}")
    outs = [o.name for o in onnx_model.graph.output]
    missing = [k for k in qg.outputs if k not in outs]
    if missing:
        raise MicroqError(f"{model}: has no output {missing} (its outputs are {outs}) but "
                          f"{model_dir} computes {list(qg.outputs)}; {hint}")


def layer_errors(graph, qg, feeds: dict[str, np.ndarray], rounding: str = "double"
                 ) -> list[LayerRow]:
    """Isolated and cumulative error of every layer's int8 output (ref.int_exec, bit-exact with
    the C) on physical-layout float `feeds`; the WORST lowest isolated SQNR are marked."""
    from .ref.float_exec import OPS, run_float
    from .ref.int_exec import run_int

    floats: dict[str, np.ndarray] = {}
    run_float(graph, feeds, on_tensor=floats.__setitem__)
    fnodes = {n.outputs[0]: n for n in graph.nodes}
    iso: dict[str, Stats] = {}
    cum: dict[str, Stats] = {}

    def deq(name: str, v: np.ndarray) -> np.ndarray:
        q = qg.tensors[name].q
        return ((v.astype(np.float64) - q.zero_point) * q.scale).astype(np.float32)

    n = len(next(iter(feeds.values())))

    def float_sample(t: str, i: int, like: np.ndarray) -> np.ndarray:
        """Sample i of the float executor's batched tensor t, shaped like the int8 one. A
        reshape that drops the leading 1 ([1, 3] -> [3]) folds the batch into axis 0; the
        samples are then consecutive blocks of memory."""
        f = floats[t]
        if f[i : i + 1].shape == like.shape or f.size != n * like.size:
            return f[i : i + 1]  # Stats.add rejects a shape mismatch
        return f.reshape(n, -1)[i].reshape(like.shape)

    for i in range(n):
        ints = {k: quantize_input(qg.tensors[k].q, v[i : i + 1]) for k, v in feeds.items()}
        run_int(qg, ints, rounding, on_tensor=ints.__setitem__)
        for t, node in fnodes.items():
            if t not in ints:
                continue
            args = [graph.tensors[a].const if graph.tensors[a].is_const else deq(a, ints[a])
                    for a in node.inputs]
            got = deq(t, ints[t])
            alone = OPS[node.op](args, node.attrs)
            iso.setdefault(t, Stats()).add(alone, got, f"layer output '{t}'")
            cum.setdefault(t, Stats()).add(float_sample(t, i, got), got, f"layer output '{t}'")
    rows = []
    for node in qg.nodes:
        t = node.outputs[0]
        if t in iso and node.kernel != "reshape" and all(r.tensor != t for r in rows):
            q = qg.tensors[t].q
            rows.append(LayerRow(node.name, node.kernel, t, q.scale, q.zero_point, iso[t],
                                 cum[t]))
    for r in sorted(rows, key=lambda r: r.isolated.sqnr_db)[:WORST]:
        r.worst = True
    return rows


def quantize_input(q, x: np.ndarray) -> np.ndarray:
    """A float graph input -> int8 (round half to even, as the tests and compare quantize)."""
    return np.clip(np.round(x / q.scale) + q.zero_point, -128, 127).astype(np.int8)
