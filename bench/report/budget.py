"""The "steps" figure: test score against training steps, one line per method, for tables whose
rows are training budgets (a profile with ``steps``, e.g. ``budget``: rows labelled
``<method label>@<N>steps``).

Per column (a task's test set): x = the budget N (log scale), y = the mean test score over the
seeds that finished, with a bar of one standard deviation (the table's ddof); a hollow marker
where any seed was under-trained (``training.undertrained``: dev still rising at the last
evaluation). Rows without a budget (methods that do not train, e.g. zero-shot) are drawn as
dashed horizontal reference lines.

The same numbers as a table (``pivot``): one row per method, one column per budget, each cell
the mean (std) over seeds with its under-trained mark, and under it the methods ranked at each
budget, so "does the budget decide the ranking?" is read off directly.
"""

from __future__ import annotations

import math

from bench.report import fmt, training
from bench.report.aggregate import Column, Row, Table, budget_of

RANKING = "ranking (best first)"


def curves(table: Table) -> dict[str, list[tuple[int, Row]]]:
    """Method label -> its budget rows, by steps."""
    out: dict[str, list[tuple[int, Row]]] = {}
    for row in table.rows:
        b = budget_of(row.method_label)
        if b:
            out.setdefault(b[0], []).append((b[1], row))
    return {label: sorted(points, key=lambda p: p[0]) for label, points in out.items()}


def steps_figure(table: Table):
    """The figure (``figures.render`` draws it, in its style, for a table with budget rows)."""
    from matplotlib.figure import Figure

    lines = curves(table)
    references = [r for r in table.rows if budget_of(r.method_label) is None]
    n = max(1, len(table.columns))
    ncols = min(2, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(6.4 * ncols, 4.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = [f"C{i}" for i in range(10)]
    for i, col in enumerate(table.columns):
        ax = axes[i // ncols][i % ncols]
        for j, (label, points) in enumerate(sorted(lines.items())):
            colour = colours[j % len(colours)]
            xs, ys, errs, hollow = [], [], [], []
            for steps, row in points:
                st = row.cells[col].stats
                if st.mean is None:
                    continue
                xs.append(steps)
                ys.append(100 * st.mean)
                errs.append(100 * (st.std or 0.0))
                hollow.append(training.counts(row, col)[0] > 0)
            if not xs:
                continue
            ax.errorbar(xs, ys, yerr=errs, color=colour, lw=1.3, capsize=2, label=label)
            for x, y, h in zip(xs, ys, hollow):
                face = "white" if h else colour
                ax.scatter([x], [y], s=28, color=colour, facecolors=face, zorder=3)
        for row in references:
            mean = row.cells[col].stats.mean
            if mean is not None:
                ax.axhline(100 * mean, ls="--", lw=1, color="0.4")
                ax.annotate(row.method_label, (0.01, 100 * mean), xycoords=("axes fraction", "data"),
                            xytext=(0, 3), textcoords="offset points", fontsize=7, color="0.3")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("Training steps (batch size as the records say; log scale)")
        ax.set_ylabel(f"{fmt.column_header(col)}, test x100 (mean over seeds)")
        ax.legend(fontsize=7, loc="best")
    for k in range(len(table.columns), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    fig.suptitle(
        f"Test score vs training steps ({table.backbone}, {table.setting.label}); bars: 1 std "
        "over seeds; hollow: dev still rising at the last evaluation in some seed",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def pivot(table: Table, col: Column) -> tuple[list[str], list[list[str]]] | None:
    """(headers, rows) of ``col``: methods by training budget, then the ranking at each budget
    (a row labelled ``RANKING``: the methods with a score there, best mean first) and the rows
    without a budget as references. Method labels are as records have them (writers escape
    them). None for a table without budget rows."""
    lines = curves(table)
    if not lines:
        return None
    budgets = sorted({steps for points in lines.values() for steps, _ in points})
    headers = ["Method", *(f"{b} steps" for b in budgets)]
    rows = []
    for label, points in lines.items():
        by_steps = dict(points)
        cells = []
        for b in budgets:
            row = by_steps.get(b)
            cells.append(
                ""
                if row is None
                else fmt.cell_text(row.cells[col]) + training.cell_marker(row, col)
            )
        rows.append([label, *cells])
    ranking = []
    for b in budgets:
        scored = [(r.cells[col].stats.mean, label) for label, points in lines.items()
                  for steps, r in points if steps == b and r.cells[col].stats.mean is not None]  # fmt: skip
        scored.sort(key=lambda x: -x[0])
        ranking.append(" > ".join(label for _, label in scored))
    rows.append([RANKING, *ranking])
    for r in table.rows:
        if budget_of(r.method_label) is None:
            rows.append(
                [f"{r.method_label} (no training)", *[fmt.cell_text(r.cells[col])] * len(budgets)]
            )
    return headers, rows
