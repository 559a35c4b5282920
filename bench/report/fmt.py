"""Display rules shared by every output (Markdown, CSV, LaTeX, HTML, figures), so that a number
reads the same everywhere. Metric names come from ``bench.core.metrics.METRICS``; method families'
names and colours are declared here, once."""

from __future__ import annotations

import re

from bench.report.aggregate import PROTOCOL, Aggregate, Cell, Column, Table

# family -> (display name, colour); colours from the Okabe-Ito colour-blind-safe palette
FAMILIES = {
    "full": ("Full fine-tuning", "#0072B2"),
    "partial": ("Partial fine-tuning", "#E69F00"),
    "prompt": ("Prompt methods", "#009E73"),
}
DASH = "\u2013"


def family_name(family: str) -> str:
    return FAMILIES.get(family, (family, "#777777"))[0]


def family_colour(family: str) -> str:
    return FAMILIES.get(family, (family, "#777777"))[1]


def metric_display(metric: str) -> str:
    from bench.core.metrics import METRICS

    return METRICS[metric].display if metric in METRICS else metric


def higher_is_better(metric: str) -> bool:
    from bench.core.metrics import METRICS

    return METRICS[metric].higher_is_better if metric in METRICS else True


def column_header(col: Column) -> str:
    return f"{col.label} ({metric_display(col.metric)})"


def score(x: float | None) -> str:
    """A metric value (0-1) as shown: x100, one decimal."""
    return DASH if x is None else f"{100 * x:.1f}"


def cell_text(cell: Cell) -> str:
    """'92.7 (0.9)': mean (std) x100; 'failed' or 'missing' when no seed finished; std 'n/a'
    for one seed (with ddof=0 it would read 0.0)."""
    st = cell.stats
    if st.mean is None:
        return cell.status
    return f"{score(st.mean)} ({std_text(st)})"


def std_text(st) -> str:
    """The std x100 as shown; 'n/a' when undefined (ddof=1) or from one seed."""
    return "n/a" if st.std is None or st.n < 2 else f"{100 * st.std:.1f}"


def best_rows(table: Table, col: Column) -> set[str]:
    """Method labels with the best mean in ``col`` as displayed (ties at one decimal: all),
    among cells with every expected seed: a cell with fewer (one seed, failed or missing ones)
    is shown but never bold."""
    shown = {
        row.method_label: round(100 * row.cells[col].stats.mean, 1)
        for row in table.rows
        if row.cells[col].status == "complete"
    }
    if not shown:
        return set()
    best = (max if higher_is_better(col.metric) else min)(shown.values())
    return {label for label, v in shown.items() if v == best}


def has_average(table: Table) -> bool:
    """An average column only where there is something to average: two or more columns."""
    return len(table.columns) > 1


def best_average(table: Table) -> set[str]:
    """The best average as displayed, among rows whose every cell is complete."""
    if not has_average(table):
        return set()
    shown = {
        r.method_label: round(100 * r.average, 1)
        for r in table.rows
        if r.average is not None and all(c.status == "complete" for c in r.cells.values())
    }
    best = max(shown.values(), default=None)
    return {label for label, v in shown.items() if v == best}


def params(n: float | None) -> str:
    if n is None:
        return DASH
    n = int(round(n))
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def pct(p: float | None) -> str:
    if p is None:
        return DASH
    return f"{p:.2f}%" if p >= 0.01 or p == 0 else f"{p:.2g}%"


def mib(b: float | None) -> str:
    return DASH if b is None else f"{b / 2**20:.1f} MiB"


def predicted(p: dict | None) -> str:
    """Predicted peak GPU memory, fp32 / bf16 (``bench.report.predicted``)."""
    if p is None:
        return DASH
    return (
        " / ".join(DASH if p[k] is None else f"{p[k] / 2**30:.2f}" for k in ("fp32", "bf16"))
        + " GiB"
    )


def seconds(s: float | None) -> str:
    return DASH if s is None else (f"{s:.0f} s" if s >= 100 else f"{s:.1f} s")


def trials(values: list[int]) -> str:
    """Trials per seed: '20', '12-20', or '1 (no search)'."""
    if not values:
        return DASH
    lo, hi = min(values), max(values)
    text = str(lo) if lo == hi else f"{lo}{DASH}{hi}"
    return text + (" (no search)" if hi == 1 else "")


def ddof_text(ddof: int) -> str:
    kind = "population std, as LM-BFF" if ddof == 0 else "sample std"
    return f"ddof={ddof}: {kind}"


def table_caption(table: Table, ddof: int) -> str:
    """One sentence that makes a table self-describing (used by every format)."""
    seeds = sorted({len(c.expected) for r in table.rows for c in r.cells.values()})
    n = "/".join(str(s) for s in seeds)
    all_trials = sorted({t for r in table.rows for c in r.cells.values() for t in c.trials})
    partial = any(c.partial for c in table.columns)
    return (
        f"{table.setting.label}, backbone {table.backbone}. Test score x100 of the configuration "
        f"chosen on dev, mean (standard deviation, {ddof_text(ddof)}) over n={n} seeds "
        f"unless marked; trials per seed: {trials(all_trials)}."
        + (" Columns marked 'partial data' ran on a sample of the task's files." if partial else "")
    )


def protocol_lines(agg: Aggregate) -> list[str]:
    """The aggregation protocol in words, for the head of the leaderboard (plain text)."""
    return [
        f"Protocol {PROTOCOL} (bench/report/aggregate.py). Per seed: the test score of the "
        "configuration chosen on the K-shot dev set (the record's chosen configuration; "
        "choice rule: best dev score, ties to the lower dev loss, then the earlier trial).",
        f"Per cell (backbone, task, method, K): mean and standard deviation over seeds "
        f"({ddof_text(agg.ddof)}), median, number of seeds and of trials; scores x100 in the "
        "task's primary metric (GLUE conventions).",
        "A cell's expected seeds are those seen for its backbone and task under any method: "
        "a seed whose run failed is 'failed', one without a record is 'missing' (or 'not run' "
        "when the profile ran the method on fewer seeds); none enters the mean, a cell lacking "
        "any is marked 'n/N seeds', and a one-seed cell's std is n/a.",
        "Average (Avg.): unweighted mean over a table's columns, given only when the table has "
        "two or more columns and every column has a mean. Bold: the best mean per column as "
        "displayed (ties: all), among cells that have every expected seed; a cell with fewer "
        "(e.g. one seed) is shown, never bold. Trainable parameters, peak memory and train "
        "time: medians over a row's finished runs.",
        "Settings (sweep profile, K and precision) are never mixed: each has its own tables.",
    ]


def slug(*parts: object) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", str(p)) for p in parts)


def table_slug(table: Table) -> str:
    s = table.setting
    fp = [] if s.precision == "fp32" else [s.precision]  # fp32 tables keep their old names
    return slug(s.profile, f"k{s.k}", *fp, table.backbone)
