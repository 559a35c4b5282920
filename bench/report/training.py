"""Was a run trained long enough? The "under-trained" marker, read from each record's
``history`` (one entry per dev evaluation: step, dev_<metric>, ...).

The rule: a record is **under-trained** when its history has at least ``MIN_EVALS`` dev
evaluations and the last one's score in the record's primary metric is strictly higher than
every earlier one's (higher is better; lower for a lower-is-better metric): the dev score was
still rising at the last evaluation, so more steps might have bought more. A plateau (the
last equal to an earlier best) or a fall is not under-trained. Records without a history
(methods that do not train) are never marked.

A table cell is marked when any of its seeds' records is under-trained, with how many.
"""

from __future__ import annotations

from bench.report.aggregate import Column, Row, Table, _higher_is_better

MIN_EVALS = 2
MARK = "under-trained"
RULE = (
    "in n of the m seeds with a dev history, the dev score was still rising at the last "
    "evaluation (strictly above every earlier evaluation's): more steps might change the ranking."
)


def undertrained(record: dict) -> bool | None:
    """Whether the dev score was still rising at the last evaluation; None when the history
    has fewer than ``MIN_EVALS`` evaluations of the primary metric."""
    metric = record.get("primary_metric")
    values = [h.get(f"dev_{metric}") for h in record.get("history") or []]
    values = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(values) < MIN_EVALS:
        return None
    sign = 1.0 if _higher_is_better(metric) else -1.0
    last, earlier = sign * values[-1], [sign * v for v in values[:-1]]
    return last > max(earlier)


def counts(row: Row, col: Column) -> tuple[int, int]:
    """(under-trained seeds, seeds with a history) of ``row`` in ``col``."""
    verdicts = [
        undertrained(r.data)
        for r in row.records
        if (r.cell["task"], r.cell["partial"]) == (col.task, col.partial)
    ]
    judged = [v for v in verdicts if v is not None]
    return sum(judged), len(judged)


def cell_marker(row: Row, col: Column) -> str:
    """' [under-trained: 2/5 seeds]' when any seed's dev score was still rising; else ''."""
    n, of = counts(row, col)
    return f" [{MARK}: {n}/{of} seeds]" if n else ""


def markdown(table: Table) -> list[str]:
    """A note under a table that has marked cells, stating the rule."""
    if not any(counts(r, c)[0] for r in table.rows for c in table.columns):
        return []
    return [f"[{MARK}: n/m seeds]: {RULE}", ""]
