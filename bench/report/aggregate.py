"""The aggregation protocol ``tunebench.aggregate/1``: from run records to table cells.

1. **Records.** Every ``*.json`` under the results folder whose ``schema`` is a
   ``tunebench.run/1`` record (schema in ``bench.run.record``), except under its ``reproduce/``
   folder (re-runs by ``tunebench reproduce``: compared, never mixed in). Other JSON files are
   counted and skipped; a record that breaks the schema is an error naming the file, and so are
   two records for the same cell and seed.
2. **Per seed.** A record is one seed of one cell. Its score is the test score of the
   configuration chosen on the K-shot dev set, which the sweep already picked: the record's
   top-level ``test`` metrics, read in the task's primary metric, on each of the task's test
   sets. The choice rule is ``choose_trial`` (best dev score; ties go to the lower dev loss, then
   to the earlier trial, as the sweep's search ranks them); a record whose kept trial
   (``search.chosen_trial``, else its dev score) is not that rule's choice among its ``trials``
   is flagged in the report's notes, never silently re-chosen.
3. **Per group** — (profile, K, backbone, task, partial, method label) and a test set: over the
   seeds that finished, their number, mean, standard deviation (``ddof`` 0 by default, as
   LM-BFF; stated in every caption), median, min and max; and the trials (configurations tried
   on dev; 1 for a run without a search).
4. **Missing and failed.** A group's expected seeds are the seeds seen for its (profile, K,
   backbone, task, partial) under any method. A seed whose record failed is *failed*; an expected
   seed without a record is *missing*. Neither enters the statistics, and both are shown. A group
   without any finished seed has no mean and is shown as failed or missing, never dropped.
5. **Average** of a row: the unweighted mean over the table's columns of the group means; given
   only when every column has a mean (so rows are compared on the same tasks).

Scores are kept as the metric returns them (0-1); tables show them x100.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.errors import TunebenchError
from bench.report import predicted

PROTOCOL = "tunebench.aggregate/1"
DEFAULT_DDOF = 0  # LM-BFF reports the population standard deviation over its 5 splits
RECORD_SCHEMA_PREFIX = "tunebench.run/"
SUPPORTED_SCHEMAS = ("tunebench.run/1",)
FAMILY_ORDER = ("full", "partial", "prompt")  # = methods.base.FAMILIES (a test checks it)
SINGLE_RUNS = "runs"  # the profile of records written by `tunebench run` (no `profile` key)
REPRODUCE = "reproduce"  # <results>/reproduce/: re-runs, left out of the folder's own report


class RecordError(TunebenchError):
    """A run record that breaks its schema; the message names the file and the field."""


# --- loading and validation -----------------------------------------------------------


@dataclass(frozen=True)
class Record:
    path: str  # relative to the results folder, with forward slashes
    data: dict

    @property
    def cell(self) -> dict:
        return self.data["cell"]

    @property
    def ok(self) -> bool:
        return self.data["status"] == "ok"


@dataclass(frozen=True)
class Loaded:
    records: list[Record]
    skipped: list[str]  # JSON files under the folder that are not run records


def load_records(results_dir: Path) -> Loaded:
    """Every run record under ``results_dir`` (recursively), validated, in path order."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise TunebenchError(
            f"results folder {results_dir} not found; run a sweep (`make reproduce`) or "
            "`tunebench run`, or pass --results"
        )
    records, skipped = [], []
    for path in sorted(results_dir.rglob("*.json")):
        rel = path.relative_to(results_dir).as_posix()
        parts = path.relative_to(results_dir).parts
        if any(part.startswith(".") for part in parts) or parts[0] == REPRODUCE:
            continue  # hidden files and folders (atomic-write temporaries, caches); re-runs
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RecordError(f"{path}: not valid JSON ({e})") from e
        schema = data.get("schema") if isinstance(data, dict) else None
        if not (isinstance(schema, str) and schema.startswith(RECORD_SCHEMA_PREFIX)):
            skipped.append(rel)
            continue
        validate(data, path)
        records.append(Record(rel, data))
    _check_unique(records)
    return Loaded(records, skipped)


_CELL_KEYS = {
    "backbone": str,
    "task": str,
    "method": str,
    "method_label": str,
    "family": str,
    "k": int,
    "seed": int,
    "partial": bool,
}


def validate(data: dict, path: Path | str = "<record>") -> None:
    """Raise RecordError unless ``data`` is a run record the protocol can read."""

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise RecordError(f"{path}: {what} (schema in bench/run/record.py)")

    need(data["schema"] in SUPPORTED_SCHEMAS, f"unsupported schema {data['schema']!r}")
    need(data.get("status") in ("ok", "failed"), "status must be 'ok' or 'failed'")
    cell = data.get("cell")
    need(isinstance(cell, dict), "missing 'cell'")
    for key, typ in _CELL_KEYS.items():
        value = cell.get(key)
        good = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        need(good, f"cell.{key} must be a {typ.__name__}, got {value!r}")
    need(cell["family"] in FAMILY_ORDER, f"cell.family must be one of {FAMILY_ORDER}")
    need(isinstance(data.get("trials", []), list), "trials must be a list")
    if data["status"] == "failed":
        need(isinstance(data.get("error"), str) and data["error"], "a failed record needs 'error'")
        return
    test, primary = data.get("test"), data.get("primary_metric")
    need(isinstance(test, dict) and test, "an ok record needs 'test' metrics")
    need(isinstance(primary, str), "an ok record needs 'primary_metric'")
    for name, metrics in test.items():
        need(_is_number(metrics.get(primary)), f"test.{name}.{primary} must be a number")
    need(isinstance(data.get("params"), dict), "an ok record needs 'params'")
    need(isinstance(data.get("memory"), dict), "an ok record needs 'memory'")


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_unique(records: list[Record]) -> None:
    seen: dict[tuple, str] = {}
    for r in records:
        key = (setting_of(r), group_key(r), r.cell["seed"])
        if key in seen:
            raise RecordError(
                f"two records for one cell and seed: {seen[key]} and {r.path}; remove one"
            )
        seen[key] = r.path


# --- the choice of a configuration per seed ------------------------------------------


def trial_dev_score(trial: dict) -> float | None:
    """A trial summary's dev score: ``dev`` as the sweep writes it (``dev_score``, or Optuna's
    ``value``, also read)."""
    for key in ("dev", "dev_score", "value"):
        if _is_number(trial.get(key)):
            return float(trial[key])
    return None


def choose_trial(trials: Sequence[dict], higher_is_better: bool = True) -> dict | None:
    """The configuration a seed keeps: among COMPLETE trials with a dev score, the best dev
    score; a tie goes to the lower dev loss (a trial without one loses), then to the lower
    trial number (the earlier trial). None when no trial completed."""
    done = [t for t in trials if t.get("state") == "COMPLETE" and trial_dev_score(t) is not None]
    if not done:
        return None
    sign = -1.0 if higher_is_better else 1.0

    def key(t):
        loss = t.get("dev_loss")
        return (
            sign * trial_dev_score(t),
            loss if _is_number(loss) else math.inf,
            t.get("number", math.inf),
        )

    return min(done, key=key)


def choice_agrees(record: dict, higher_is_better: bool = True) -> bool | None:
    """Whether the record kept ``choose_trial``'s trial: its ``search.chosen_trial`` when the
    sweep wrote one, else its dev score against that trial's. None without trials."""
    chosen = choose_trial(record.get("trials") or [], higher_is_better)
    if chosen is None:
        return None
    kept = (record.get("search") or {}).get("chosen_trial")
    if isinstance(kept, int):
        return kept == chosen.get("number")
    dev = (record.get("dev") or {}).get(record.get("primary_metric"))
    if not _is_number(dev):
        return None
    return math.isclose(trial_dev_score(chosen), dev, rel_tol=1e-9, abs_tol=1e-12)


# --- statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    n: int
    mean: float | None
    std: float | None  # None when undefined (no score, or one score with ddof=1)
    median: float | None
    min: float | None
    max: float | None


def summarize(scores: Sequence[float], ddof: int = DEFAULT_DDOF) -> Stats:
    """n, mean, standard deviation with ``ddof`` (sum of squares / (n - ddof)), median, range."""
    n = len(scores)
    if n == 0:
        return Stats(0, None, None, None, None, None)
    mean = math.fsum(scores) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in scores) / (n - ddof)) if n > ddof else None
    return Stats(n, mean, std, statistics.median(scores), min(scores), max(scores))


# --- groups, cells, rows, tables ---------------------------------------------------------


@dataclass(frozen=True, order=True)
class Setting:
    """What makes numbers comparable at all: the sweep profile (protocol), K, and the numeric
    precision the runs computed in (records from before precision was recorded are fp32)."""

    profile: str
    k: int
    precision: str = "fp32"

    @property
    def label(self) -> str:
        name = (
            "single runs (no search)" if self.profile == SINGLE_RUNS else f"profile {self.profile}"
        )
        return f"{name}, K={self.k}, {self.precision}"


@dataclass(frozen=True)
class Column:
    """One table column: a task's test set, scored by the task's primary metric."""

    task: str
    test_set: str
    metric: str
    partial: bool
    several_test_sets: bool  # the task has more than one (MNLI): the label names it

    @property
    def notes(self) -> list[str]:
        """What the task name alone does not say: which test set, and partial data."""
        notes = [self.test_set.removeprefix("test_")] if self.several_test_sets else []
        return notes + (["partial data"] if self.partial else [])

    @property
    def label(self) -> str:
        return self.task + (f" ({', '.join(self.notes)})" if self.notes else "")


@dataclass(frozen=True)
class Seed:
    seed: int
    status: str  # "ok" | "failed" | "missing" | "not run" (a seed the profile left out)
    score: float | None
    trials: int  # configurations tried on dev (1 for a run without a search)
    pruned: int
    failed_trials: int
    error: str | None
    path: str | None
    choice_agrees: bool | None


@dataclass(frozen=True)
class Cell:
    column: Column
    expected: tuple[int, ...]
    seeds: tuple[Seed, ...]  # one per expected seed, in seed order; missing ones included
    ddof: int

    @property
    def stats(self) -> Stats:
        return summarize([s.score for s in self.seeds if s.score is not None], self.ddof)

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.seeds)

    @property
    def status(self) -> str:
        """complete (every expected seed has a score), incomplete, failed, or missing."""
        n = self.stats.n
        if n == len(self.expected):
            return "complete"
        if n:
            return "incomplete"
        return "failed" if self.count("failed") else "missing"

    @property
    def marker(self) -> str:
        """Empty for a complete cell; else e.g. '3/5 seeds; 1 failed, 1 missing'."""
        if self.status == "complete":
            return ""
        parts = [
            f"{n} {what}" for what in ("failed", "missing", "not run") if (n := self.count(what))
        ]
        return f"{self.stats.n}/{len(self.expected)} seeds; " + ", ".join(parts)

    @property
    def trials(self) -> list[int]:
        return [s.trials for s in self.seeds if s.status == "ok"]


@dataclass
class Row:
    setting: Setting
    backbone: str
    method_label: str
    method: str
    family: str
    cells: dict[Column, Cell]
    records: list[Record] = field(default_factory=list)  # the row's finished records

    @property
    def average(self) -> float | None:
        means = [c.stats.mean for c in self.cells.values()]
        return None if not means or None in means else math.fsum(means) / len(means)

    @property
    def average_marker(self) -> str:
        have = sum(c.stats.mean is not None for c in self.cells.values())
        if have < len(self.cells):
            return f"{have}/{len(self.cells)} tasks"
        return "incomplete cells" if any(c.marker for c in self.cells.values()) else ""

    def efficiency(self) -> dict:
        """Medians over the row's finished records (all tasks and seeds)."""
        recs = [r.data for r in self.records]

        def med(values):
            values = [v for v in values if _is_number(v)]
            return statistics.median(values) if values else None

        return {
            "trainable": med(r["params"].get("trainable") for r in recs),
            "pct": med(r["params"].get("trainable_pct_of_backbone") for r in recs),
            "backbone_total": med(r["params"].get("backbone_total") for r in recs),
            "peak_bytes": med(r["memory"].get("peak_bytes") for r in recs),
            "predicted": predicted.lookup(self.backbone, self.method_label),  # GPU, not measured
            "train_s": med((r.get("time") or {}).get("train_s") for r in recs),
            "search_s": med(_search_seconds(r) for r in recs),
            "devices": sorted({str(r["memory"].get("device")) for r in recs}),
            "trials": sorted({t for c in self.cells.values() for t in c.trials}),
        }


def _search_seconds(record: dict) -> float | None:
    if _is_number((record.get("time") or {}).get("search_s")):
        return record["time"]["search_s"]
    trials = record.get("trials") or []
    secs = [t.get("seconds") for t in trials if _is_number(t.get("seconds"))]
    return math.fsum(secs) if secs else None


@dataclass
class Table:
    setting: Setting
    backbone: str
    columns: list[Column]
    rows: list[Row]
    # what the writers derive from the table and share (significance's comparisons), made once
    memo: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Aggregate:
    tables: list[Table]
    records: list[Record]
    skipped: list[str]
    ddof: int
    notes: list[str]  # protocol flags worth a reader's attention (choice disagreements, ...)


BUDGET = re.compile(r"^(?P<label>.+)@(?P<steps>\d+)steps$")  # = bench.sweep.profile.BUDGET_MARK


def budget_of(label: str) -> tuple[str, int] | None:
    """('finetune', 200) for 'finetune@200steps'; None for a label without a budget."""
    m = BUDGET.match(label)
    return (m["label"], int(m["steps"])) if m else None


def _label_key(label: str) -> tuple[str, int]:
    """Rows by method label, a method's budget rows (``finetune@50steps``) by their steps."""
    return budget_of(label) or (label, -1)


def setting_of(r: Record) -> Setting:
    precision = (r.data.get("config") or {}).get("precision") or "fp32"
    return Setting(str(r.data.get("profile") or SINGLE_RUNS), r.cell["k"], precision)


def group_key(r: Record) -> tuple:
    c = r.cell
    return (c["backbone"], c["task"], c["partial"], c["method_label"])


def aggregate(loaded: Loaded, ddof: int = DEFAULT_DDOF) -> Aggregate:
    """Apply the protocol to every record: one Table per (setting, backbone)."""
    if ddof not in (0, 1):
        raise TunebenchError(f"ddof must be 0 or 1, got {ddof}")
    by_table: dict[tuple[Setting, str], list[Record]] = defaultdict(list)
    for r in loaded.records:
        by_table[(setting_of(r), r.cell["backbone"])].append(r)
    tables = [_table(s, b, recs, ddof) for (s, b), recs in sorted(by_table.items())]
    return Aggregate(tables, loaded.records, loaded.skipped, ddof, _notes(loaded.records))


def _table(setting: Setting, backbone: str, recs: list[Record], ddof: int) -> Table:
    columns = _columns(recs)
    expected: dict[tuple, set[int]] = defaultdict(set)
    for r in recs:
        expected[(r.cell["task"], r.cell["partial"])].add(r.cell["seed"])
    by_method: dict[str, list[Record]] = defaultdict(list)
    for r in recs:
        by_method[r.cell["method_label"]].append(r)
    rows = []
    for label, mrecs in by_method.items():
        first = mrecs[0].cell
        planned = _planned(mrecs)
        cells = {
            col: _cell(col, tuple(sorted(expected[(col.task, col.partial)])), mrecs, planned, ddof)
            for col in columns
        }
        ok = [r for r in mrecs if r.ok]
        rows.append(Row(setting, backbone, label, first["method"], first["family"], cells, ok))
    rows.sort(key=lambda row: (_family_rank(row.family), *_label_key(row.method_label)))
    return Table(setting, backbone, columns, rows)


def _family_rank(family: str) -> int:
    return FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)


def _columns(recs: list[Record]) -> list[Column]:
    """The test sets of every (task, partial) in ``recs``, in the task catalog's order."""
    from tasks import TASKS

    found: dict[tuple[str, bool], dict] = {}
    for r in recs:
        entry = found.setdefault((r.cell["task"], r.cell["partial"]), {"sets": [], "metric": None})
        if r.ok:
            entry["metric"] = entry["metric"] or r.data["primary_metric"]
            entry["sets"] += [n for n in r.data["test"] if n not in entry["sets"]]
    columns = []
    for (task, partial), entry in found.items():
        spec = TASKS.get(task)
        metric = spec.metrics[0] if spec else (entry["metric"] or "acc")
        sets = entry["sets"] or list(_test_sets(task, partial)) or ["test"]
        columns += [Column(task, s, metric, partial, len(sets) > 1) for s in sets]
    return sorted(columns, key=column_key)


def _test_sets(task: str, partial: bool) -> list[str]:
    from tasks import TASKS

    spec = TASKS.get(task)
    if spec is None:
        return []
    return list((spec.partial_files if partial and spec.partial_files else spec.files).test)


def column_key(col: Column) -> tuple:
    """Columns in the task catalog's order (unknown tasks last), full data before partial,
    test sets in the task's order."""
    from tasks import TASKS

    names = list(TASKS)
    sets = _test_sets(col.task, col.partial)
    return (_rank(names, col.task), col.task, col.partial, _rank(sets, col.test_set), col.test_set)


def _rank(order: list[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


def _cell(
    col: Column, expected: tuple[int, ...], recs: list[Record], planned: set[int] | None, ddof: int
) -> Cell:
    mine = {
        r.cell["seed"]: r
        for r in recs
        if (r.cell["task"], r.cell["partial"]) == (col.task, col.partial)
    }
    seeds = tuple(
        _seed(col, s, mine.get(s))
        if s in mine or planned is None or s in planned
        else Seed(s, "not run", None, 0, 0, 0, None, None, None)
        for s in expected
    )
    return Cell(col, expected, seeds, ddof)


def _planned(recs: list[Record]) -> set[int] | None:
    """The seeds a profile ran this method on when it ran it on fewer than its seeds (the
    records' ``planned_seeds``); None when no record says."""
    lists = [r.data["planned_seeds"] for r in recs if r.data.get("planned_seeds") is not None]
    return set().union(*lists) if lists else None


def _seed(col: Column, seed: int, r: Record | None) -> Seed:
    if r is None:
        return Seed(seed, "missing", None, 0, 0, 0, None, None, None)
    trials = r.data.get("trials") or []
    states = [t.get("state") for t in trials]
    common = dict(
        trials=max(1, len(trials)),
        pruned=states.count("PRUNED"),
        failed_trials=states.count("FAIL"),
        path=r.path,
    )
    if not r.ok:
        return Seed(seed, "failed", None, error=r.data["error"], choice_agrees=None, **common)
    score = (r.data["test"].get(col.test_set) or {}).get(col.metric)
    if not _is_number(score):  # this record lacks the column's test set or metric
        return Seed(seed, "missing", None, error=None, choice_agrees=None, **common)
    agrees = choice_agrees(r.data, _higher_is_better(col.metric))
    return Seed(seed, "ok", float(score), error=None, choice_agrees=agrees, **common)


def _higher_is_better(metric: str) -> bool:
    from bench.core.metrics import METRICS

    return METRICS[metric].higher_is_better if metric in METRICS else True


def _notes(records: Iterable[Record]) -> list[str]:
    notes = []
    for r in records:
        if r.ok and choice_agrees(r.data, _higher_is_better(r.data["primary_metric"])) is False:
            notes.append(
                f"{r.path}: the configuration it kept is not the best trial by the protocol's "
                "rule (best dev score, then lower dev loss, then earlier trial); its test score "
                "is used as recorded"
            )
    return notes
