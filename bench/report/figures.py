"""Figures (matplotlib, PNG and SVG), byte-identical for the same records: no dates in the
files, a fixed SVG id salt, the bundled DejaVu Sans font, no global pyplot state.

Per table: the average score against trainable parameters (log scale, one colour per family),
and the per-seed spread of every method on every column."""

from __future__ import annotations

import io
import math

from bench.report import fmt
from bench.report.aggregate import Table

RC = {
    "svg.hashsalt": "tunebench",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
FORMATS = ("png", "svg")


def _save(fig) -> dict[str, bytes]:
    out = {}
    for f in FORMATS:
        buf = io.BytesIO()
        meta = {"Date": None} if f == "svg" else {}
        fig.savefig(buf, format=f, metadata=meta, bbox_inches="tight")
        out[f] = buf.getvalue()
    return out


def render(table: Table) -> dict[str, dict[str, bytes]]:
    """{'params': {'png': ..., 'svg': ...}, 'seeds': {...}} for one table."""
    import matplotlib

    from bench.report import budget

    with matplotlib.rc_context(RC):
        out = {"params": _save(params_figure(table)), "seeds": _save(seeds_figure(table))}
        if budget.curves(table):  # a table of training budgets: test score vs steps
            out["steps"] = _save(budget.steps_figure(table))
        return out


def params_figure(table: Table):
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    points = [(r, r.efficiency()["trainable"], r.average) for r in table.rows]
    shown = [(r, x, y) for r, x, y in points if y is not None and x is not None]
    positive = [x for _, x, _ in shown if x > 0]
    zero_at = min(positive) / 10 if positive else 1.0  # where "0 trainable" is drawn
    labels: dict[tuple[float, float], list[str]] = {}  # one label per point, names joined
    for r, x, y in shown:
        px = x if x > 0 else zero_at
        ax.scatter([px], [100 * y], s=40, color=fmt.family_colour(r.family), zorder=3)
        labels.setdefault((px, round(100 * y, 1)), []).append(r.method_label)
    ys = [y for _, y in labels]
    near = 0.035 * (max(ys) - min(ys)) if ys else 0  # closer than this: stack the labels
    placed: list[tuple[float, float]] = []
    for (px, y), names in sorted(labels.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        below = sum(p == px and abs(q - y) < near for p, q in placed)
        placed.append((px, y))
        ax.annotate(", ".join(names), (px, y), xytext=(5, 4 - 9 * below),
                    textcoords="offset points", fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    if shown and not positive:
        ax.set_xlim(zero_at / 10, zero_at * 10)
    if any(x == 0 for _, x, _ in shown):
        ticks = [t for t in ax.get_xticks() if t > zero_at * 3]
        ax.set_xticks(
            [zero_at, *ticks], ["0", *(f"$10^{{{round(math.log10(t))}}}$" for t in ticks)]
        )
        ax.set_xlim(zero_at / 3, ax.get_xlim()[1])
    families = sorted(
        {r.family for r, _, _ in shown},
        key=lambda f: list(fmt.FAMILIES).index(f) if f in fmt.FAMILIES else 99,
    )
    handles = [
        Line2D([], [], marker="o", ls="", color=fmt.family_colour(f), label=fmt.family_name(f))
        for f in families
    ]
    if handles:
        ax.legend(handles=handles, loc="best", fontsize=8)
    partial = " (some partial data)" if any(c.partial for c in table.columns) else ""
    ax.set_xlabel("Trainable parameters (median over runs; log scale)")
    ax.set_ylabel(f"Average over {len(table.columns)} columns, x100{partial}")
    ax.set_title(f"{table.backbone}, {table.setting.label}", fontsize=10)
    hidden = [r.method_label for r, x, y in points if y is None or x is None]
    if hidden:
        fig.text(0.01, -0.02, "Not shown (no complete average): " + ", ".join(hidden), fontsize=7)
    if not shown:
        ax.text(0.5, 0.5, "no method has a complete average", transform=ax.transAxes, ha="center")
    return fig


def seeds_figure(table: Table):
    from matplotlib.figure import Figure

    n = max(1, len(table.columns))
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.3 * ncols, 2.9 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    labels = [r.method_label for r in table.rows]
    for i, col in enumerate(table.columns):
        ax = axes[i // ncols][i % ncols]
        for j, row in enumerate(table.rows):
            cell = row.cells[col]
            scores = [100 * s.score for s in cell.seeds if s.score is not None]
            offsets = (
                [0.0]
                if len(scores) < 2
                else [-0.2 + 0.4 * k / (len(scores) - 1) for k in range(len(scores))]
            )
            colour = fmt.family_colour(row.family)
            ax.scatter(
                [j + o for o in offsets[: len(scores)]], scores, s=14, color=colour, zorder=3
            )
            if cell.stats.mean is not None:
                ax.hlines(100 * cell.stats.mean, j - 0.3, j + 0.3, color=colour, lw=1.5)
        ticks = [
            lab
            + (
                f" ({r.cells[col].stats.n}/{len(r.cells[col].expected)})"
                if r.cells[col].marker
                else ""
            )
            for lab, r in zip(labels, table.rows)
        ]
        ax.set_xticks(range(len(labels)), ticks, rotation=45, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(fmt.column_header(col), fontsize=9)
    for k in range(len(table.columns), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    fig.suptitle(
        f"Per-seed test scores x100 ({table.backbone}, {table.setting.label}); line: mean; (n/N): seeds that finished",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
