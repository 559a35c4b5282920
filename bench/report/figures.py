"""Figures (matplotlib, PNG and SVG), byte-identical for the same records: no dates in the
files, a fixed SVG id salt, the bundled DejaVu Sans font, no global pyplot state.

Per table:

- ``params``: the score against trainable parameters. The y axis names the task and metric (or
  the columns averaged); error bars are the seed standard deviation; the x axis is logarithmic
  with a tick at every decade the points span, and methods that train nothing sit in a panel of
  their own at "0". A cell with fewer than its expected seeds is drawn hollow, without an error
  bar. Labels are placed so that none overlaps another label or a point (moved labels get a
  leader line to their point).
- ``seeds``: every seed's score of every method on every column, methods as rows (one row per
  method, the figure as tall as the table), the mean as a bar.
"""

from __future__ import annotations

import io
import math
import textwrap

from bench.report import fmt
from bench.report.aggregate import Row, Table, summarize

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
LABEL_SIZE = 8  # points


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


def _new_figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)  # a renderer, to measure labels before placing them
    return fig


# --- the score against trainable parameters ----------------------------------------------------


def score_axis_label(table: Table) -> str:
    """What the y axis shows: the task and metric, or which columns are averaged."""
    partial = " (some partial data)" if any(c.partial for c in table.columns) else ""
    if len(table.columns) == 1:
        return f"{fmt.column_header(table.columns[0])}, test x100{partial}"
    tasks = ", ".join(dict.fromkeys(c.task for c in table.columns))
    metrics = "/".join(dict.fromkeys(fmt.metric_display(c.metric) for c in table.columns))
    text = f"Average of {len(table.columns)} columns: {tasks} ({metrics}), test x100{partial}"
    return textwrap.fill(text, 48)


def row_point(row: Row) -> tuple[float | None, float | None, bool]:
    """(score, seed std, complete) of a row: one column's mean and std, or the average over the
    columns and the std over seeds of the per-seed averages (seeds that every column has)."""
    cells = list(row.cells.values())
    complete = all(c.status == "complete" for c in cells)
    if row.average is None:
        return None, None, complete
    if len(cells) == 1:
        st = cells[0].stats
        return st.mean, (st.std if st.n > 1 else None), complete
    per_seed = [{s.seed: s.score for s in c.seeds if s.score is not None} for c in cells]
    common = set.intersection(*(set(p) for p in per_seed))
    averages = [math.fsum(p[s] for p in per_seed) / len(per_seed) for s in sorted(common)]
    st = summarize(averages, cells[0].ddof)
    return row.average, (st.std if st.n > 1 else None), complete


def _decades(xs: list[float]) -> list[float]:
    lo = math.floor(math.log10(min(xs)) + 1e-9)
    hi = math.ceil(math.log10(max(xs)) - 1e-9)
    return [10.0**e for e in range(lo, max(hi, lo + 1) + 1)]


def params_figure(table: Table):
    rows = []  # (row, trainable, score, std, complete)
    hidden = []
    for r in table.rows:
        x = r.efficiency()["trainable"]
        y, std, complete = row_point(r)
        if x is None or y is None:
            hidden.append(r.method_label)
        else:
            rows.append((r, x, 100 * y, None if std is None else 100 * std, complete))
    zero = [p for p in rows if p[1] == 0]
    positive = [p for p in rows if p[1] > 0]
    fig = _new_figure((7.4, 4.8))
    if zero and positive:
        grid = fig.add_gridspec(1, 2, width_ratios=(2.0, 5.4), wspace=0.04)
        ax0 = fig.add_subplot(grid[0])
        ax = fig.add_subplot(grid[1], sharey=ax0)
        ax.tick_params(labelleft=False)
    elif zero:
        ax0, ax = fig.add_subplot(), None
    else:
        ax0, ax = None, fig.add_subplot()
    panels = [(a, pts) for a, pts in ((ax0, zero), (ax, positive)) if a is not None]
    for a, pts in panels:
        for r, x, y, std, complete in pts:
            colour = fmt.family_colour(r.family)
            px = 0.0 if a is ax0 else x
            if std is not None and complete:
                a.errorbar([px], [y], yerr=[std], fmt="none", ecolor=colour, elinewidth=1,
                           capsize=2.5, alpha=0.8, zorder=2)  # fmt: skip
            a.scatter([px], [y], s=36, zorder=3, color=colour if complete else "white",
                      edgecolors=colour, linewidths=1.3)  # fmt: skip
    if ax is not None:
        ax.set_xscale("log")
        ticks = _decades([x for _, x, *_ in positive])
        ax.set_xticks(ticks, [f"$10^{{{round(math.log10(t))}}}$" for t in ticks])
        ax.set_xticks([], minor=True)
        ax.set_xlim(ticks[0] / 2, ticks[-1] * 2)
        ax.set_xlabel("Trainable parameters (median over runs; log scale)")
    if ax0 is not None:
        ax0.set_xlim(-0.3, 1.0)
        ax0.set_xticks([0.0], ["0"])
        ax0.set_xlabel("no training" if ax is not None else "Trainable parameters")
    first = ax0 if ax0 is not None else ax
    first.set_ylabel(score_axis_label(table))
    ys = [y for _, _, y, *_ in rows] + [y + (s or 0) for _, _, y, s, _ in rows]
    ys += [y - (s or 0) for _, _, y, s, _ in rows]
    if ys:
        pad = max(1.0, 0.06 * (max(ys) - min(ys)))
        first.set_ylim(min(ys) - pad, max(ys) + pad)
    _legend(fig, rows)
    fig.suptitle(f"{table.backbone}, {table.setting.label}", fontsize=10, y=1.02)
    if hidden:
        fig.text(0.01, -0.03, "Not shown (no score): " + ", ".join(hidden), fontsize=7)
    if not rows:
        first.text(0.5, 0.5, "no method has a score", transform=first.transAxes, ha="center")
    _place_labels(fig, panels, ax0)
    return fig


def _legend(fig, rows) -> None:
    from matplotlib.lines import Line2D

    families = sorted({r.family for r, *_ in rows}, key=_family_rank)
    handles = [
        Line2D([], [], marker="o", ls="", color=fmt.family_colour(f), label=fmt.family_name(f))
        for f in families
    ]
    handles.append(Line2D([], [], color="0.3", lw=1, marker="|", ms=8, label="seed std"))
    if any(not complete for *_, complete in rows):
        handles.append(Line2D([], [], marker="o", ls="", mfc="white", mec="0.3",
                              label="fewer seeds (n/N)"))  # fmt: skip
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.9),
               ncol=len(handles), fontsize=8, frameon=False)  # fmt: skip


def _family_rank(family: str) -> int:
    return list(fmt.FAMILIES).index(family) if family in fmt.FAMILIES else 99


def _place_labels(fig, panels, ax0) -> None:
    """One label per point (names stacked where points coincide), each put where it overlaps no
    other label and no point, inside its panel: right of the point, else left, else moved up or
    down in steps with a leader line back to the point."""
    renderer = fig.canvas.get_renderer()
    groups = []  # (axes, (x, y) in data, names)
    for a, pts in panels:
        at: dict[tuple[float, float], list[str]] = {}
        for r, x, y, _, complete in pts:
            key = (0.0 if a is ax0 else x, round(y, 1))
            n = "" if complete else _seed_count(r)
            at.setdefault(key, []).append(r.method_label + n)
        groups += [(a, key, names) for key, names in at.items()]
    # obstacles, in display pixels: every point's marker and error bar
    marker, cap = 6.0, 4.0
    obstacles = []
    for a, (x, y), _ in groups:
        px, py = a.transData.transform((x, y))
        obstacles.append((px - marker, py - marker, px + marker, py + marker))
    for a, pts in panels:
        for _, x, y, std, complete in pts:
            if std is not None and complete:
                x = 0.0 if a is ax0 else x
                (px, lo), (_, hi) = a.transData.transform([(x, y - std), (x, y + std)])
                obstacles.append((px - cap, lo - 1, px + cap, hi + 1))
    placed: list[tuple[float, float, float, float]] = []
    scale = 72.0 / fig.dpi  # pixels -> points
    groups.sort(key=lambda g: (-g[1][1], g[1][0]))  # top to bottom
    texts = ["\n".join(names) for *_, names in groups]  # coinciding methods: one name a line
    sizes = []
    for (a, _, _), text in zip(groups, texts):
        probe = a.text(0, 0, text, fontsize=LABEL_SIZE)
        box = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((box.width, box.height))
    # labels of points one above the other (one method family's x): stacked in the points' order
    stacked = [0.0] * len(groups)
    columns: dict[tuple, list[int]] = {}
    for i, (a, (x, _), _) in enumerate(groups):
        columns.setdefault((id(a), x), []).append(i)
    for members in columns.values():
        centres = [groups[i][0].transData.transform(groups[i][1])[1] for i in members]
        for i, c, want in zip(members, _stack(centres, [sizes[i][1] for i in members]), centres):
            stacked[i] = c - want
    for (a, (x, y), _), text, (w, h), dy0 in zip(groups, texts, sizes, stacked):
        px, py = a.transData.transform((x, y))
        area = a.get_window_extent(renderer)
        best, best_cost = None, None
        for dx, dy in [(7.0, dy0), (-7.0, dy0), *_candidates(h)]:
            x0 = px + dx if dx > 0 else px + dx - w
            rect = (x0, py + dy - h / 2, x0 + w, py + dy + h / 2)
            cost = sum(_overlap(rect, o) for o in placed + obstacles)
            cost += _outside(rect, area)
            if cost == 0:
                best = (dx, dy, rect)
                break
            if best_cost is None or cost < best_cost:
                best, best_cost = (dx, dy, rect), cost
        dx, dy, rect = best
        placed.append(rect)
        moved = abs(dy) > 0.5 * h
        a.annotate(
            text,
            (x, y),
            xytext=(dx * scale, dy * scale),
            textcoords="offset points",
            ha="left" if dx > 0 else "right",
            va="center",
            fontsize=LABEL_SIZE,
            arrowprops=(
                dict(arrowstyle="-", color="0.55", lw=0.6, shrinkA=1, shrinkB=4) if moved else None
            ),
            annotation_clip=False,
        )


def _stack(centres: list[float], heights: list[float], gap: float = 1.0) -> list[float]:
    """Label centres (pixels, given top to bottom) as near their points as they can be without
    overlapping, in the points' order: overlapping neighbours merge into a block centred on the
    mean of its points."""
    blocks: list[list[int]] = []

    def layout(block):  # the block's centres: contiguous, its mean offset from the points 0
        offsets = [0.0]
        for j in range(1, len(block)):
            offsets.append(offsets[-1] - (heights[block[j - 1]] + heights[block[j]]) / 2 - gap)
        top = sum(centres[i] - o for i, o in zip(block, offsets)) / len(block)
        return [top + o for o in offsets]

    for i in range(len(centres)):
        blocks.append([i])
        while len(blocks) > 1:
            upper, lower = blocks[-2], blocks[-1]
            bottom = layout(upper)[-1] - heights[upper[-1]] / 2
            if bottom >= layout(lower)[0] + heights[lower[0]] / 2 + gap:
                break
            blocks[-2:] = [upper + lower]
    return [c for block in blocks for c in layout(block)]


def _seed_count(row: Row) -> str:
    cells = list(row.cells.values())
    n = min(c.stats.n for c in cells)
    return f" ({n}/{len(cells[0].expected)})"


def _candidates(h: float):
    """Offsets (pixels) to try, nearest first: beside the point, then down and up by steps
    (labels are placed from the top point down, so moving down first keeps their order)."""
    gap = 7.0
    yield gap, 0.0
    yield -gap, 0.0
    for k in range(1, 16):
        for sign in (-1, 1):
            dy = sign * k * (h + 1.0)
            yield gap + 6.0, dy
            yield -gap - 6.0, dy


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _outside(rect, area) -> float:
    """Pixels of ``rect`` outside ``area`` (a matplotlib Bbox), as an area."""
    w, h = rect[2] - rect[0], rect[3] - rect[1]
    inside_w = max(0.0, min(rect[2], area.x1) - max(rect[0], area.x0))
    inside_h = max(0.0, min(rect[3], area.y1) - max(rect[1], area.y0))
    return w * h - inside_w * inside_h


# --- every seed ------------------------------------------------------------------------------


def seeds_figure(table: Table):
    """Methods as rows (top to bottom in the table's order), one panel per column, each seed a
    dot and the mean a bar; the figure grows with the number of methods, not with white space."""
    n = max(1, len(table.columns))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    rows = table.rows
    height = 0.24 * max(len(rows), 2) + 0.9
    fig = _new_figure((2.2 + 3.0 * ncols, height * nrows + 0.4))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    one = len(table.columns) == 1  # then "(n/N)" follows the name; else it is in each panel
    labels = [
        r.method_label + (_seed_count(r) if one and any(c.marker for c in r.cells.values()) else "")
        for r in rows
    ]
    for i, col in enumerate(table.columns):
        ax = axes[i // ncols][i % ncols]
        for j, row in enumerate(rows):
            cell = row.cells[col]
            scores = [100 * s.score for s in cell.seeds if s.score is not None]
            k = len(scores)
            offsets = [0.0] if k < 2 else [-0.22 + 0.44 * m / (k - 1) for m in range(k)]
            colour = fmt.family_colour(row.family)
            ax.scatter(scores, [j + o for o in offsets[:k]], s=12, color=colour, zorder=3)
            if cell.stats.mean is not None:
                ax.vlines(100 * cell.stats.mean, j - 0.32, j + 0.32, color=colour, lw=1.6)
            if cell.marker and not one:
                ax.text(0.99, j, f"{cell.stats.n}/{len(cell.expected)}", color="0.4", fontsize=7,
                        ha="right", va="center", transform=ax.get_yaxis_transform())  # fmt: skip
        if not one and any(row.cells[col].marker for row in rows):  # room for the counts
            lo, hi = ax.get_xlim()
            ax.set_xlim(lo, hi + 0.18 * (hi - lo))
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel(f"{fmt.column_header(col)}, test x100", fontsize=8)
    for k in range(len(table.columns), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    fig.suptitle(
        f"{table.backbone}, {table.setting.label}: every seed (dot) and the mean (bar); "
        "(n/N): seeds that finished",
        fontsize=9,
    )
    fig.tight_layout()
    return fig
