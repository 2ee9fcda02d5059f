"""Reports for users, formatting only: text tables, the compile summary and the `compare` report
(its data classes, table and plot). The analysis that fills a CompareReport is microq.compare."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MicroqError

LAYER_SAMPLES = 100  # per-layer statistics use at most this many samples


def _printable(s: str) -> str:
    """A model-controlled name as terminal text: control characters (a newline, an ANSI escape
    sequence) are shown escaped, never interpreted."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """An aligned text table: a header row, a rule, the rows ("l"/"r" per column)."""
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
        "arena_lower_bound": int(meta["lower_bound"]),  # liveness: no two tensors share bytes
        # with outputs written over the inputs they consume (codegen/overlap.py); the liveness
        # bound where no kernel overlaps
        "arena_overlap_bound": int(meta.get("overlap_bound", -1)) if meta.get(
            "overlap_bound", -1) >= 0 else int(meta["lower_bound"]),
        "inputs": meta["inputs"],
        "outputs": meta["outputs"],
    }


def summary_table(meta: dict) -> str:
    s = summary_json(meta)
    rows = [[i, l["name"], l["kernel"], f"{l.get('macs', 0):,}", f"{l.get('weight_bytes', 0):,}"]
            for i, l in enumerate(meta["layers"])]
    lines = [table(["#", "layer", "kernel", "MACs", "weight B"], rows, "rllrr"), ""]
    ratio = s["arena_bytes"] / s["arena_lower_bound"] if s["arena_lower_bound"] else 1.0
    lines += [
        f"layers        {s['layers']}",
        f"MACs          {s['macs']:,}",
        f"flash weights {_kib(s['weight_bytes'])}",
        f"RAM arena     {_kib(s['arena_bytes'])}  (liveness bound "
        f"{s['arena_lower_bound']:,} B, ratio {ratio:.2f}"
        + (f"; overlap-aware bound {s['arena_overlap_bound']:,} B"
           if s["arena_overlap_bound"] != s["arena_lower_bound"] else "") + ")",
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
               table(["layer", "kernel", "scale", "range", "SQNR dB", "max abs err",
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
        out.append(table(["output", "max abs err", "SQNR dB", "cosine", "top-1 agree",
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


_table = table  # the name cli and older callers used
