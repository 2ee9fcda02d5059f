"""`compare`'s analysis: the float model (onnxruntime) against the compiled int8 model, per
output and per layer (the float IR's ops against the integer reference, ref.int_exec, which the
C equals bit for bit). Takes the graphs and a runner; api.compare loads them. Formatting of the
result: report.CompareReport."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import ir, qir
from .data import load_arrays, model_inputs, sample_shape
from .codegen.plan import plan_graph
from .errors import MicroqError
from .quant import rules_s16
from .ref.float_exec import OPS, run_float, to_physical
from .ref.int_exec import run_int
from .report import LAYER_SAMPLES, WORST, CompareReport, LayerRow, Stats


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
    static = {i.name: i.shape[0] for i in sess.get_inputs()
              if i.shape and isinstance(i.shape[0], int) and i.shape[0] > 1}
    # a static dim 0 > 1 that microq read as the batch (loader.static_batches): the samples
    # come without it (N, *shape[1:]) and go to onnxruntime B at a time, the last group padded
    # by repeating its last sample; otherwise a static dim 0 > 1 is data: a sample is the tensor
    dims = {i.name: list(i.shape) for i in sess.get_inputs()}
    batch = {k: b for k, b in static.items() if k in data and data[k].ndim == len(dims[k])}
    whole = set(static) - set(batch)
    if batch:
        b = max(batch.values())
        if len(set(batch.values())) != 1:
            raise MicroqError(f"{model}: inputs with different static batches {batch}")
        for i in range(0, n, b):
            idx = [min(j, n - 1) for j in range(i, i + b)]
            count = min(b, n - i)
            res = sess.run(names, {k: v[idx] if k in batch else v[idx[0]] if k in whole
                                   else v[i : i + 1] for k, v in data.items()})
            for k, r in zip(names, res):
                if not r.ndim or r.shape[0] != b:
                    raise MicroqError(f"{model}: output '{k}' {list(r.shape)} does not keep "
                                      f"the static batch of {b} on axis 0")
                outs[k].extend(r[:count])
        return {k: np.stack(v) for k, v in outs.items()}
    for i in range(n):
        res = sess.run(names, {k: v[i] if k in whole else v[i : i + 1]
                               for k, v in data.items()})
        for k, r in zip(names, res):
            # one sample as the host runner returns it (runtime.host.sample_shape)
            outs[k].append(r[0] if r.ndim and r.shape[0] == 1 else r)
    return {k: np.stack(v) for k, v in outs.items()}


def compare(model, graph: ir.Graph, qg: qir.QGraph, run: Callable, data_path,
            rounding: str = "double") -> CompareReport:
    """Float `model` (onnxruntime) against the compiled int8 model on the samples in data_path:
    `run(data) -> outputs` runs the host-compiled C (api.run), `graph` is the float IR and `qg`
    the quantized graph compiled into it (layer by layer errors)."""
    arrays = load_arrays(data_path)
    shapes = {k: qg.logical_shapes[k] for k in qg.inputs}
    data = model_inputs(data_path, arrays, shapes)
    n = len(next(iter(data.values())))
    ref = run_onnxruntime(model, data)
    got = run(data)
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
    rep.layers = layer_errors(graph, qg, feeds, rounding)
    rep.int16_layers = [n.name for n in qg.nodes
                        if n.kernel.endswith("_s16") and n.kernel != "requantize_s16"]
    if not rep.int16_layers:  # an all-int8 folder: which layers would gain from 16x8
        rep.int16_gains = rules_s16.int16_gains(graph, feeds, rep.layers, rounding)
    return rep


def check_model_matches(model, onnx_model, model_dir, qg) -> None:
    """The float model must be the one compiled into model_dir: same input names and shapes
    (the batch aside), and every compiled output among its outputs."""
    consts = {i.name for i in onnx_model.graph.initializer}

    def dims(vi) -> tuple:
        d = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or "?"
                  for d in vi.type.tensor_type.shape.dim)
        if d and isinstance(d[0], int) and d[0] > 1:  # batch-less (data.sample_shape); a
            return tuple(x if isinstance(x, int) else 1 for x in d)  # [T, N, F]'s N is 1
        return d[1:]

    have = {i.name: dims(i) for i in onnx_model.graph.input if i.name not in consts}
    want = {k: sample_shape(qg.logical_shapes[k]) for k in qg.inputs}
    for k, d in have.items():  # a static batch > 1 that microq read as the batch
        if k in want and d[1:] == want[k] and d != want[k]:
            have[k] = d[1:]
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
            if isinstance(alone, tuple):  # LSTM / GRU: (y, state); the layer's output is y
                alone = alone[0]
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
    return qir.quantize_int8(x, q.scale, q.zero_point)


# ---- `compile --int16 auto`: which layers go to 16x8, and what it costs ------------------------

def auto_layers(graph: ir.Graph, qg8: qir.QGraph, feeds: dict[str, np.ndarray],
                rounding: str = "double", threshold_db: float | None = None):
    """The layers `--int16 auto` runs in 16x8, and why. A layer with a 16x8 kernel whose
    isolated int8 SQNR (compare's per-layer analysis on `feeds`: the layer fed its dequantized
    int8 input, against float) is below threshold_db has an output int8 cannot carry (e.g.
    outlier channels that set a coarse scale for all the others); it goes to 16x8, and so do
    the 16x8-capable layers that read its output, so that the int16 tensor reaches them (an
    int16 output requantized to int8 for its reader gains nothing). Returns (names in graph
    order, {low layer: its isolated SQNR in dB}). Default threshold: rules_s16.AUTO_SQNR_DB."""
    if threshold_db is None:
        threshold_db = rules_s16.AUTO_SQNR_DB
    rows = layer_errors(graph, qg8, feeds, rounding)
    by_tensor = {n.outputs[0]: n for n in graph.nodes}
    low = {}
    for r in rows:
        node = by_tensor.get(r.tensor)
        if node is not None and rules_s16.supports_16(node) and r.isolated.sqnr_db < threshold_db:
            low[node.name] = float(r.isolated.sqnr_db)
    chosen = set(low)
    for name in low:
        node = next(n for n in graph.nodes if n.name == name)
        chosen.update(c.name for c in rules_s16._consumers16(graph, node.outputs[0]))
    return [n.name for n in graph.nodes if n.name in chosen], low


def int16_cost(qg8: qir.QGraph, qg: qir.QGraph) -> dict:
    """RAM and work of the mixed graph against the all-int8 one: arena bytes (planned as the
    generated C), int16 activation bytes, and the MACs that run in 16x8 kernels."""
    macs16 = 0
    for n in qg.nodes:
        if n.kernel in ("conv2d_s16", "depthwise_conv2d_s16", "fully_connected_s16"):
            out = qg.tensors[n.outputs[0]].shape
            per = int(np.prod(n.params.filter.shape[1:])) if n.kernel != "depthwise_conv2d_s16" \
                else int(np.prod(n.params.filter.shape[1:3]))
            macs16 += int(np.prod(out)) * per
    return {
        "arena_int8": plan_graph(qg8).arena_size,
        "arena_mixed": plan_graph(qg).arena_size,
        "int16_layers": [n.name for n in qg.nodes if n.kernel.endswith("_s16")
                         and n.kernel != "requantize_s16"],
        "requantize_nodes": sum(1 for n in qg.nodes if n.kernel == "requantize_s16"),
        "macs_16x8": macs16,
    }
