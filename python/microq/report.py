"""Reports for users: the compile summary and `compare` (float onnxruntime vs int8 C)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import load_arrays, model_inputs

LAYER_SAMPLES = 100  # per-layer statistics use at most this many samples


def _table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    cells = [[str(c) for c in r] for r in rows]
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

    def add(self, r: np.ndarray, q: np.ndarray) -> None:
        r = np.asarray(r, np.float64).ravel()
        q = np.asarray(q, np.float64).ravel()
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
class CompareReport:
    samples: int
    outputs: dict[str, Stats] = field(default_factory=dict)
    top1_agreement: dict[str, float] = field(default_factory=dict)
    accuracy_float: dict[str, float] = field(default_factory=dict)
    accuracy_int8: dict[str, float] = field(default_factory=dict)
    layers: list[tuple[str, str, str, Stats]] = field(default_factory=list)  # name, kernel, tensor
    layer_samples: int = 0

    def to_json(self) -> dict:
        return {
            "samples": self.samples,
            "outputs": {k: dict(v.to_json(),
                                top1_agreement=self.top1_agreement.get(k),
                                accuracy_float=self.accuracy_float.get(k),
                                accuracy_int8=self.accuracy_int8.get(k))
                        for k, v in self.outputs.items()},
            "layer_samples": self.layer_samples,
            "layers": [dict(name=n, kernel=k, tensor=t, **s.to_json())
                       for n, k, t, s in self.layers],
        }

    def table(self) -> str:
        rows = [[n, k, f"{s.max_abs:.4g}", f"{s.sqnr_db:.1f}", f"{s.cosine:.5f}"]
                for n, k, _, s in self.layers]
        out = [f"per layer (int8 reference, bit-exact with the C; first {self.layer_samples} "
               "samples):",
               _table(["layer", "kernel", "max abs err", "SQNR dB", "cosine"], rows, "llrrr"), "",
               f"outputs ({self.samples} samples, float onnxruntime vs int8 C):"]
        rows = []
        for k, s in self.outputs.items():
            agree = self.top1_agreement.get(k)
            accf, acci = self.accuracy_float.get(k), self.accuracy_int8.get(k)
            rows.append([k, f"{s.max_abs:.4g}", f"{s.sqnr_db:.1f}", f"{s.cosine:.5f}",
                         "-" if agree is None else f"{100 * agree:.2f}%",
                         "-" if accf is None else f"{100 * accf:.2f}%",
                         "-" if acci is None else f"{100 * acci:.2f}%"])
        out.append(_table(["output", "max abs err", "SQNR dB", "cosine", "top-1 agree",
                           "float acc", "int8 acc"], rows, "lrrrrrr"))
        return "\n".join(out)


def run_onnxruntime(model: str | Path, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float reference outputs, one sample at a time (models may fix the batch to 1)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    n = len(next(iter(data.values())))
    outs: dict[str, list] = {k: [] for k in names}
    for i in range(n):
        res = sess.run(names, {k: v[i : i + 1] for k, v in data.items()})
        for k, r in zip(names, res):
            outs[k].append(r[0])
    return {k: np.stack(v) for k, v in outs.items()}


def compare(model, model_dir, data_path) -> CompareReport:
    from . import api
    from .onnx_import import import_onnx
    from .ref.float_exec import run_float, to_physical
    from .ref.int_exec import run_int

    qg = api.load_qgraph(model_dir)
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
        s.add(ref[k], got[k])
        rep.outputs[k] = s
        r, g = ref[k].reshape(n, -1), got[k].reshape(n, -1)
        if r.shape[1] > 1:
            rep.top1_agreement[k] = float(np.mean(r.argmax(1) == g.argmax(1)))
            if labels is not None and len(labels) == n and len(qg.outputs) == 1:
                lab = np.asarray(labels).reshape(n)
                rep.accuracy_float[k] = float(np.mean(r.argmax(1) == lab))
                rep.accuracy_int8[k] = float(np.mean(g.argmax(1) == lab))

    # per layer: float IR vs the integer reference (bit-exact with the C), same tensor names
    graph = import_onnx(str(model))
    m = min(n, LAYER_SAMPLES)
    rep.layer_samples = m
    stats: dict[str, Stats] = {}
    floats: dict[str, np.ndarray] = {}
    run_float(graph, {k: to_physical(graph, k, v[:m]) for k, v in data.items()},
              on_tensor=lambda name, v: floats.__setitem__(name, v))
    for i in range(m):
        feeds = {}
        for k, v in data.items():
            t = qg.tensors[k]
            x = to_physical(graph, k, v[i : i + 1])
            feeds[k] = np.clip(np.round(x / t.q.scale) + t.q.zero_point, -128, 127).astype(np.int8)

        def on_int(name, value, i=i):
            if name in floats and name in qg.tensors:
                t = qg.tensors[name]
                deq = (value.astype(np.float64) - t.q.zero_point) * t.q.scale
                stats.setdefault(name, Stats()).add(floats[name][i : i + 1].reshape(deq.shape), deq)

        run_int(qg, feeds, on_tensor=on_int)
    for node in qg.nodes:
        t = node.outputs[0]
        if t in stats and node.kernel != "reshape":
            rep.layers.append((node.name, node.kernel, t, stats[t]))
    return rep
