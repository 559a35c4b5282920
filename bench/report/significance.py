"""Is a difference between two methods real? Paired comparisons of a table's rows.

For a column (a task's test set) and two rows A and B of one table (same setting, backbone):

- **Over seeds.** The seeds both rows finished are matched (each seed is one K-shot split);
  the difference is the mean over them of score(A) - score(B), and a two-sided paired t-test
  over the matched seeds says whether it differs from 0 (``scipy.stats.ttest_rel``; needs two
  seeds and differences that vary: methods without training give the same score on every
  seed, and the test is then undefined, shown "n/a"). A Wilcoxon signed-rank test cannot reach
  p < 0.05 with 5 seeds (its smallest two-sided p is 1/16), so it is not used.
- **Over test examples** (accuracy only: it is a mean over examples). The records keep each
  test example's prediction (``predictions``), so per matched seed s and example i,
  d[s, i] = correct_A - correct_B. The paired bootstrap resamples *examples* (the same
  resample for every seed, so an example's seeds stay together) ``RESAMPLES`` times with a
  generator seeded by ``SEED``, and takes the mean of d over the seeds and the resampled
  examples; the 95% interval is the 2.5th and 97.5th percentiles. Deterministic.
- **Significant** when every test that applies says so: t-test p < ``ALPHA`` (when defined)
  and the bootstrap interval excludes 0 (when the records have predictions). Neither
  available: unknown (None).

Each row is compared with the best row of its column (highest mean; the first in table
order on a tie) and with a named baseline row (``BASELINE``, when the table has it). The
Markdown leaderboard marks a score whose difference from the column's best is not
significant with ``NOT_SIGNIFICANT``, and lists every comparison under the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.report.aggregate import Column, Row, Table

ALPHA = 0.05
RESAMPLES = 1000
SEED = 0
BASELINE = "finetune"
NOT_SIGNIFICANT = "\u2248"  # ≈: not significantly different from the column's best


@dataclass(frozen=True)
class Comparison:
    row: str  # method label of A
    against: str  # method label of B
    column: Column
    seeds: tuple[int, ...]  # matched seeds
    mean_diff: float | None  # mean over matched seeds of score(A) - score(B), 0-1
    t_p: float | None  # paired t-test over seeds, two-sided; None when undefined
    boot_diff: float | None  # mean per-example difference, seeds pooled (accuracy)
    boot_low: float | None  # 95% paired-bootstrap interval
    boot_high: float | None
    examples: int  # test examples per seed in the bootstrap (0: not run)

    @property
    def significant(self) -> bool | None:
        verdicts = []
        if self.t_p is not None:
            verdicts.append(self.t_p < ALPHA)
        if self.boot_low is not None:
            verdicts.append(self.boot_low > 0 or self.boot_high < 0)
        return all(verdicts) if verdicts else None


def paired_t(a: list[float], b: list[float]) -> float | None:
    """Two-sided paired t-test p-value; None with fewer than 2 pairs or constant differences."""
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2 or np.allclose(d, d[0], rtol=0, atol=1e-12):
        return None
    return float(stats.ttest_rel(a, b).pvalue)


def paired_bootstrap(
    diffs: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float, float]:
    """``diffs`` (S seeds, N examples) of per-example differences: (mean, 2.5th and 97.5th
    percentiles of the mean over resampled examples, seeds kept together)."""
    per_example = diffs.mean(0)  # (N,): seeds pooled; every seed has the same N examples
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_example), size=(resamples, len(per_example)))  # (R, N)
    means = per_example[idx].mean(1)  # (R,)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(per_example.mean()), float(low), float(high)


def _indices(value) -> np.ndarray:
    """Class indices as a record keeps them: a string of digits or a list."""
    return np.array([int(c) for c in value] if isinstance(value, str) else list(value), dtype=int)


def _correct(record: dict, test_set: str) -> np.ndarray | None:
    """Per test example, 1 where the record's prediction is the gold label; None without
    predictions for ``test_set``."""
    preds = (record.get("predictions") or {}).get(test_set)
    if not preds or "pred" not in preds or "labels" not in preds:
        return None
    pred, gold = _indices(preds["pred"]), _indices(preds["labels"])
    return (pred == gold).astype(float) if len(pred) == len(gold) else None


def _by_seed(row: Row, col: Column) -> dict[int, dict]:
    """The row's finished records of this column, by seed."""
    return {
        r.cell["seed"]: r.data
        for r in row.records
        if (r.cell["task"], r.cell["partial"]) == (col.task, col.partial)
    }


def compare(a: Row, b: Row, col: Column, resamples: int = RESAMPLES) -> Comparison:
    """Row ``a`` against row ``b`` on ``col``: over matched seeds and over test examples."""
    scores_a = {s.seed: s.score for s in a.cells[col].seeds if s.score is not None}
    scores_b = {s.seed: s.score for s in b.cells[col].seeds if s.score is not None}
    seeds = tuple(sorted(set(scores_a) & set(scores_b)))
    xa, xb = [scores_a[s] for s in seeds], [scores_b[s] for s in seeds]
    mean_diff = math.fsum(x - y for x, y in zip(xa, xb)) / len(seeds) if seeds else None
    boot = (None, None, None)
    examples = 0
    if col.metric == "acc" and seeds:
        ra, rb = _by_seed(a, col), _by_seed(b, col)
        rows = [
            (_correct(ra.get(s, {}), col.test_set), _correct(rb.get(s, {}), col.test_set))
            for s in seeds
        ]
        if all(x is not None and y is not None and len(x) == len(y) for x, y in rows) and (
            len({len(x) for x, _ in rows}) == 1
        ):
            diffs = np.stack([x - y for x, y in rows])  # (S, N)
            boot = paired_bootstrap(diffs, resamples)
            examples = diffs.shape[1]
    return Comparison(
        a.method_label, b.method_label, col, seeds, mean_diff, paired_t(xa, xb), *boot, examples
    )


def best_row(table: Table, col: Column) -> Row | None:
    """The row with the highest mean in ``col`` (the first in table order on a tie)."""
    scored = [r for r in table.rows if r.cells[col].stats.mean is not None]
    return max(scored, key=lambda r: r.cells[col].stats.mean) if scored else None


def comparisons(table: Table, baseline: str = BASELINE, resamples: int = RESAMPLES):
    """Every row against its column's best row and against ``baseline`` (a method label); made
    once per table and arguments (every writer of the report reads the same)."""
    key = ("significance", baseline, resamples)
    if key not in table.memo:
        table.memo[key] = _comparisons(table, baseline, resamples)
    return table.memo[key]


def _comparisons(table: Table, baseline: str, resamples: int) -> dict[str, list[Comparison]]:
    out: dict[str, list[Comparison]] = {"best": [], "baseline": []}
    base = next((r for r in table.rows if r.method_label == baseline), None)
    for col in table.columns:
        best = best_row(table, col)
        for row in table.rows:
            if row.cells[col].stats.mean is None:
                continue
            if best is not None and row is not best:
                out["best"].append(compare(row, best, col, resamples))
            if base is not None and row is not base:
                out["baseline"].append(compare(row, base, col, resamples))
    return out


def not_significant(table: Table) -> set[tuple[str, Column]]:
    """(method label, column) of the scores not significantly below their column's best."""
    return {(c.row, c.column) for c in comparisons(table)["best"] if c.significant is False}


def caption(resamples: int = RESAMPLES) -> str:
    return (
        f"{NOT_SIGNIFICANT}: not significantly different from the column's best. A difference "
        f"is significant when a two-sided paired t-test over the matched seeds gives "
        f"p < {ALPHA} (when defined: 2+ seeds whose differences vary) and a paired bootstrap "
        f"over test examples (seeds pooled, {resamples} resamples, seed {SEED}; accuracy only) "
        "gives a 95% interval that excludes 0."
    )


def _pts(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


HEADER = ["Method", "Against", "Column", "Seeds", "Mean diff.", "t-test p",
          "Bootstrap diff. [95% CI]", "Significant"]  # fmt: skip
ALIGN = "|---|---|---|---:|---:|---:|---:|---|"


def table_rows(table: Table) -> list[list[str]]:
    """The comparisons of one table as rows of ``HEADER``'s cells, against the best first, then
    against the baseline; the first two cells are method labels as records have them (the
    writers escape them as in every other table)."""
    found = comparisons(table)
    rows = [("best", c) for c in found["best"]] + [("baseline", c) for c in found["baseline"]]
    out = []
    for kind, c in rows:
        boot = (
            "n/a"
            if c.boot_diff is None
            else f"{_pts(c.boot_diff)} [{_pts(c.boot_low)}, {_pts(c.boot_high)}]"
        )
        p = "n/a" if c.t_p is None else "<0.001" if c.t_p < 0.001 else f"{c.t_p:.3f}"
        sig = {True: "yes", False: "no", None: "n/a"}[c.significant]
        out.append([c.row, f"{c.against} ({kind})", c.column.label, str(len(c.seeds)),
                    _pts(c.mean_diff), p, boot, sig])  # fmt: skip
    return out
