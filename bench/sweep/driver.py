"""Running a sweep: each cell of a profile is claimed, searched, tested, and written as one
record; cells that have a record are finished and skipped, so a sweep resumes where it
stopped.

Record of a cell: ``<results>/<profile>/<backbone>/<task>[-partial]/<method label>/
k<K>-seed<S>.json``, the run-record schema (bench/run/record.py) with ``trials`` (one entry per
trial: number, params, state COMPLETE | PRUNED | FAIL, dev, dev_loss, best_step, steps, error,
traceback, seconds), ``search`` and ``profile``. Records are written atomically (a kill leaves
the old file or none, never half of one); a cell whose trials all failed gets a record with
status "failed" and is finished too (delete it, or pass --retry-failed, to run it again).

Optuna's storage is ``<results>/<profile>/optuna.journal`` unless a SQLAlchemy URL is given.
Several workers, on one machine or on several sharing the results folder, split the cells
through claims (bench/sweep/claims.py).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from bench.core.errors import TunebenchError
from bench.core.io import atomic_write_json, without_nonfinite
from bench.core.paths import component
from bench.run.record import new_record
from bench.sweep import claims, journal, search
from bench.sweep.profile import SweepCell

STATES = ("done", "failed", "running", "to do")


@dataclass(frozen=True)
class Context:
    results: Path
    storage: object  # an Optuna storage (bench.sweep.search.open_storage)
    storage_desc: str  # for records: a journal path, or the URL without its password
    data_root: Path
    device: object  # torch.device


def default_storage(results: Path, profile: str) -> Path:
    return Path(results) / component(profile) / "optuna.journal"


def feature_cache(results: Path) -> Path:
    return Path(results) / "cache" / "features"


def quiet() -> None:
    """One bar and one line per cell: no Optuna trial logs, no transformers warnings."""
    import optuna
    import transformers.utils.logging as tf_logging

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# --- states ----------------------------------------------------------------------------------


def read_record(path: Path) -> dict | None:
    """The record at ``path``, or None if there is none. (Sweeps write records atomically, so
    one that does not parse was edited by hand.)"""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TunebenchError(
            f"{path} is not a valid record ({e}); delete it to rerun its cell"
        ) from None


def state(cell: SweepCell, results: Path) -> tuple[str, str]:
    """(state, detail): done | failed (the error) | running (who) | to do."""
    record = read_record(cell.record_path(results))
    if record is not None:
        if record["status"] == "ok":
            return "done", ""
        return "failed", record.get("error") or ""
    who = claims.holder(cell.record_path(results))
    if who is None:
        return "to do", ""
    if who["alive"] is False:
        return "to do", f"claim left by dead pid {who['pid']}"
    where = f"pid {who['pid']} on {who['host']}" if who["pid"] else "just claimed"
    return "running", where + (f" since {who['since']}" if who.get("since") else "")


def estimate(cell: SweepCell, results: Path) -> float | None:
    """Expected seconds for the cell: the profile's ``estimate_s``, else the mean time of
    this method's finished records on the same backbone and task."""
    if cell.estimate_s is not None:
        return float(cell.estimate_s)
    times = []
    for path in cell.record_path(results).parent.glob("*.json"):
        record = read_record(path) or {}
        if record.get("status") == "ok" and "total_s" in record.get("time", {}):
            times.append(record["time"]["total_s"])
    return mean(times) if times else None


# --- running ---------------------------------------------------------------------------------


def sweep(cells: Iterable[SweepCell], ctx: Context) -> Iterator[tuple[SweepCell, dict | None]]:
    """Run every unfinished cell this worker can claim. Yields (cell, record) for each cell
    it ran, and (cell, None) for each it found finished by another worker. Cells held by other
    live workers are looked at again after a pass that got anywhere, then left to them.
    Frozen trunks' features go to ``<results>/cache/features``, shared by every worker."""
    from bench.engine import data

    data.FEATURES.use_directory(feature_cache(ctx.results))
    pending = list(cells)
    while pending:
        busy = []
        for cell in pending:
            journal.check_free(ctx.results)  # stop cleanly before a cell, not inside one
            path, record = cell.record_path(ctx.results), None
            with claims.claim(path) as held:
                if not held:
                    busy.append(cell)
                    continue
                if not path.exists():  # (another worker may have finished it since we looked)
                    record = _run_and_write(cell, path, ctx)
            yield cell, record
        if len(busy) == len(pending):
            return  # no progress: the rest is running elsewhere
        pending = busy


def _run_and_write(cell: SweepCell, path: Path, ctx: Context) -> dict:
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)  # an atomic write cut short by a kill
    record = run_cell(cell, ctx)
    try:
        try:
            atomic_write_json(path, record)  # a failed write leaves no file, hence no record
        except ValueError as e:  # a NaN/inf somewhere: the cell failed, the sweep goes on
            record = without_nonfinite(record)
            record.update(status="failed", error=f"the record held a non-finite number ({e})")
            atomic_write_json(path, record)
    except OSError as e:
        raise journal.disk_error(e, f"writing the record of {cell.name}") from None
    return record


def run_cell(cell: SweepCell, ctx: Context, guard=None, resume: bool = False) -> dict:
    """Search the cell on its dev set, test the chosen trial's model, and return the record.
    Nothing here stops the sweep: a failure is the record's error. ``guard``/``resume``: a
    cell leased from a database (bench/sweep/worker.py): its heartbeat, and whether the cell
    was taken over from another worker (its study is continued)."""
    from bench.core.metrics import METRICS
    from bench.engine import compute, precision
    from bench.run.runner import finish_record, run_trial
    from methods import get_method
    from tasks import get_task
    from tasks.splits import sample_split

    start, done_before = time.perf_counter(), compute.TOTAL.total()
    task, method = get_task(cell.task), get_method(cell.method)
    record = new_record(
        {"backbone": cell.backbone, "task": task.name, "method": method.name,
         "method_label": cell.label, "family": cell.family, "k": cell.k, "seed": cell.seed,
         "partial": cell.partial},
        str(ctx.device),
    )  # fmt: skip
    record["profile"] = cell.profile
    if cell.planned_seeds is not None:
        record["planned_seeds"] = list(cell.planned_seeds)
    try:
        hp = method.hyperparameters(cell.settings)  # the precision, even if every trial fails:
        record["config"] = {"precision": precision.resolve(hp["precision"], ctx.device)}
        split = sample_split(task, cell.k, cell.seed, ctx.data_root, partial=cell.partial)
        higher = METRICS[task.metrics[0]].higher_is_better
        study = search.new_study(cell.study_name, ctx.storage, cell.search, higher,
                                 resumable=guard is not None, resume=resume)  # fmt: skip
        record["search"] = {
            **search.describe(study, method, cell.settings, cell.search),
            "storage": ctx.storage_desc,
        }

        def run(hp, report):
            return run_trial(method, cell.backbone, task, split, hp, ctx.device, report=report)

        outcome = search.run_search(
            study, method, cell.settings, cell.search, run, task.metrics[0], guard
        )
        record["trials"] = outcome.trials
        record["search"]["chosen_trial"] = outcome.best_number
        if outcome.best is None:
            record["error"] = _all_failed(outcome.trials)
        else:
            finish_record(record, outcome.best, method, cell.backbone, task, split, ctx.device)
    except Exception as e:  # noqa: BLE001 - the cell is recorded as failed; the sweep goes on
        if journal.is_disk_error(e):  # not the cell's failure: stop, record nothing
            raise journal.disk_error(e, f"at cell {cell.name}") from None
        record.update(status="failed", error=f"{type(e).__name__}: {e}")
    record["time"]["search_s"] = round(sum(t["seconds"] for t in record["trials"]), 3)
    cell_compute = compute.TOTAL.total().minus(done_before).as_dict()  # every trial and test
    record["compute"] = {**(record["compute"] or {}), "cell": cell_compute}
    record["time"]["total_s"] = round(time.perf_counter() - start, 3)
    return record


def _all_failed(trials: list[dict]) -> str:
    errors = sorted({t["error"] for t in trials if t["error"]})
    pruned = sum(t["state"] == "PRUNED" for t in trials)
    return f"no trial completed ({len(trials)} trials, {pruned} pruned); errors: " + (
        "; ".join(errors) or "none"
    )
