"""`microq compile --plot-memory out.png`: the arena over time, one bar per buffer at its offset
for the layers it is live (matplotlib is an optional extra)."""

from __future__ import annotations

from pathlib import Path

from ..errors import MicroqError
from ..qir import QGraph
from .plan import Plan

HINT = "--plot-memory needs matplotlib: pip install 'microq[plot]' (or pip install matplotlib)"


def require_matplotlib() -> None:
    """Fail before any work when matplotlib is missing (one line, no traceback)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MicroqError(HINT) from None


def plot_memory(g: QGraph, plan: Plan, path: str | Path) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arena = plan.arena_buffers()
    in_place = {plan.buffers[j].root for _, j, _ in plan.overlaps}
    steps = max(len(g.nodes), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.18 * steps + 3), 5))
    cmap = plt.get_cmap("tab20")
    for k, b in enumerate(arena):
        color = cmap(k % 20)
        ax.broken_barh([(b.first - 0.45, b.last - b.first + 0.9)], (b.offset, b.size),
                       facecolors=color, edgecolors="black" if b.root in in_place else color,
                       linewidth=1.2 if b.root in in_place else 0.3, alpha=0.85)
        if b.size >= 0.06 * max(plan.arena_size, 1):
            ax.text((b.first + b.last) / 2, b.offset + b.size / 2, b.root.split("/")[-1][:18],
                    ha="center",
                    va="center", fontsize=6)
    ax.axhline(plan.arena_size, color="tab:red", linestyle="-", linewidth=1)
    ax.axhline(plan.lower_bound, color="tab:gray", linestyle="--", linewidth=1)
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(0, max(plan.arena_size, plan.lower_bound, 1) * 1.05)
    ax.set_xlabel("layer (node index)")
    ax.set_ylabel("arena offset (bytes)")
    title = (f"{g.name}: arena {plan.arena_size:,} B (red), liveness bound "
             f"{plan.lower_bound:,} B (dashed)")
    if plan.overlaps:
        title += f"; {len(plan.overlaps)} output(s) over their input (black edge)"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
