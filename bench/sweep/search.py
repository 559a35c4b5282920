"""Hyperparameter search for one cell: an Optuna study, its trials, and the rule that picks
the winner. The test set is never read here; only the dev scores the trials report.

- ``tpe``: a TPE sampler seeded from the cell, over the method's declared search space,
  and a median pruner fed with the dev score after every dev evaluation.
- ``grid``: every point of a declared grid, no pruning: LM-BFF's protocol is learning rate
  {1e-5, 2e-5, 5e-5} x batch size {2, 4, 8}, 1,000 steps, dev every 100, best checkpoint.

Settings a profile fixes are not searched, even if the method's space declares them. Methods
that do not train, or have nothing left to search, run once with their settings.

Each trial's model is built and trained by a ``run(hp, report)`` function (the runner's
``run_trial`` bound to the cell); the best trial's model is kept in memory, so the chosen
configuration is tested without being retrained.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench.core.errors import TunebenchError
from bench.core.metrics import METRICS
from bench.sweep.journal import is_disk_error
from methods.base import Method

MODES = ("tpe", "grid")
PRUNERS = ("median", "none")
LMBFF_GRID = {"lr": [1e-5, 2e-5, 5e-5], "batch_size": [2, 4, 8]}
TIE_RULE = (
    "highest dev score of the primary metric; ties: lower dev loss at the chosen step, "
    "then the earlier trial"
)


@dataclass(frozen=True)
class SearchConfig:
    mode: str = "tpe"
    trials: int = 4  # per cell (grid: ignored, the grid's size)
    tpe_startup_trials: int = 10  # TPE samples at random until this many trials are done
    pruner: str = "median"
    pruner_startup_trials: int = 2  # finished trials before the median pruner acts
    pruner_warmup_steps: int = 0  # training steps before a trial can be pruned
    grid: Mapping[str, list] = field(default_factory=dict)  # grid mode: name -> values


def sampler_seed(study_name: str) -> int:
    """A seed derived from the cell's name: stable across processes and machines."""
    return int(hashlib.sha256(study_name.encode()).hexdigest()[:8], 16)


def open_storage(url_or_path: str | Path) -> optuna.storages.BaseStorage:
    """A SQLAlchemy URL (``postgresql://...``, for workers on many machines) or a journal file
    path, which several processes may share (SQLite breaks when they create studies at once)."""
    text = str(url_or_path)
    if "://" in text:
        try:
            return optuna.storages.RDBStorage(text)
        except Exception as e:  # noqa: BLE001 - driver missing, server down, bad URL, ...
            raise TunebenchError(
                f"cannot open Optuna storage {describe_storage(text)}: {type(e).__name__}: {e}"
            ) from None
    path = Path(text)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    except OSError as e:
        raise TunebenchError(
            f"cannot open the Optuna journal {path} ({e.strerror or e}); free space or fix the "
            "folder's permissions, or pass --results (or --storage) elsewhere"
        ) from None
    except ValueError as e:  # a line in the middle that is not JSON (the tail is repaired)
        raise TunebenchError(
            f"the Optuna journal {path} is damaged ({e}); move it aside to start the searches "
            "of unfinished cells afresh (finished cells keep their records)"
        ) from None


def describe_storage(url_or_path: str | Path) -> str:
    """The storage as recorded: a URL without its password."""
    text = str(url_or_path)
    if "://" not in text:
        return f"journal file {text}"
    scheme, _, rest = text.partition("://")
    if "@" in rest:
        user, _, host = rest.rpartition("@")
        rest = f"{user.split(':')[0]}:***@{host}"
    return f"{scheme}://{rest}"


# --- what a cell searches --------------------------------------------------------------------


class _Pinned:
    """An Optuna trial whose ``suggest_*`` give the profile's value for a fixed setting (so it
    is not searched) and ask the real trial for everything else."""

    def __init__(self, trial, fixed: Mapping):
        self._trial, self._fixed = trial, fixed

    def _suggest(self, kind: str, name: str, *args, **kwargs):
        if name in self._fixed:
            return self._fixed[name]
        return getattr(self._trial, kind)(name, *args, **kwargs)

    def suggest_float(self, name, *args, **kwargs):
        return self._suggest("suggest_float", name, *args, **kwargs)

    def suggest_int(self, name, *args, **kwargs):
        return self._suggest("suggest_int", name, *args, **kwargs)

    def suggest_categorical(self, name, *args, **kwargs):
        return self._suggest("suggest_categorical", name, *args, **kwargs)


def suggest(trial, method: Method, fixed: Mapping, config: SearchConfig) -> dict:
    """The hyperparameters this trial tries: grid values, or the method's space minus what
    the profile fixes."""
    if not method.trains:
        return {}
    if config.mode == "grid":
        return {name: trial.suggest_categorical(name, list(v)) for name, v in config.grid.items()}
    if method.space is None:
        return {}
    return {k: v for k, v in method.space(_Pinned(trial, fixed)).items() if k not in fixed}


class _Probe:
    """Stands in for an Optuna trial, to learn which names a search space suggests."""

    def suggest_float(self, name, low, high, **kwargs):
        return low

    def suggest_int(self, name, low, high, **kwargs):
        return low

    def suggest_categorical(self, name, choices):
        return choices[0]


def searched_names(method: Method, fixed: Mapping, config: SearchConfig) -> list[str]:
    """Names the search varies for this method (empty: one trial is enough)."""
    return sorted(suggest(_Probe(), method, fixed, config))


def n_trials(method: Method, fixed: Mapping, config: SearchConfig) -> int:
    if not searched_names(method, fixed, config):
        return 1
    if config.mode == "grid":
        return math.prod(len(v) for v in config.grid.values())
    return config.trials


def new_study(
    name: str, storage, config: SearchConfig, higher_is_better: bool = True
) -> optuna.Study:
    """A fresh study for the cell. One left by an interrupted attempt is deleted first: the
    cell starts over with the same seeded sampler, so its record does not depend on when (or
    whether) it was interrupted."""
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass
    seed = sampler_seed(name)
    if config.mode == "grid":
        sampler = optuna.samplers.RandomSampler(seed=seed)  # never asked: all values are set
    else:
        sampler = optuna.samplers.TPESampler(n_startup_trials=config.tpe_startup_trials, seed=seed)
    return optuna.create_study(
        storage=storage, sampler=sampler, pruner=make_pruner(config), study_name=name,
        direction="maximize" if higher_is_better else "minimize",
    )  # fmt: skip


def make_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    if config.mode == "grid" or config.pruner == "none":
        return optuna.pruners.NopPruner()  # LM-BFF trains every grid point to the end
    return optuna.pruners.MedianPruner(
        n_startup_trials=config.pruner_startup_trials, n_warmup_steps=config.pruner_warmup_steps
    )


def describe(study: optuna.Study, method: Method, fixed: Mapping, config: SearchConfig) -> dict:
    """The record's ``search`` block."""
    median = isinstance(study.pruner, optuna.pruners.MedianPruner)
    return {
        "mode": config.mode,
        "n_trials": n_trials(method, fixed, config),
        "searched": searched_names(method, fixed, config),
        "grid": dict(config.grid) if config.mode == "grid" else None,
        "fixed": dict(fixed),
        "sampler": "grid" if config.mode == "grid" else type(study.sampler).__name__,
        "sampler_seed": sampler_seed(study.study_name),
        "tpe_startup_trials": config.tpe_startup_trials if config.mode == "tpe" else None,
        "pruner": type(study.pruner).__name__,
        "pruner_startup_trials": config.pruner_startup_trials if median else None,
        "pruner_warmup_steps": config.pruner_warmup_steps if median else None,
        "tie_rule": TIE_RULE,
        "study": study.study_name,
    }


# --- running the trials ----------------------------------------------------------------------


@dataclass
class Outcome:
    # the chosen trial's result (the runner's Trial, its model in memory); None if all failed
    best: object | None
    best_number: int | None
    trials: list[dict]  # one summary per trial, for the record


def _rank(summary: dict, sign: float) -> tuple:
    """Higher ranks first: the better dev score (``sign`` -1 when lower is better), then the
    lower dev loss, then the earlier trial."""
    loss = summary["dev_loss"] if summary["dev_loss"] is not None else math.inf
    return (sign * summary["dev"], -loss, -summary["number"])


def run_search(
    study: optuna.Study,
    method: Method,
    fixed: Mapping,
    config: SearchConfig,
    run: Callable[[dict, Callable], object],
    metric: str,
) -> Outcome:
    """Run the cell's trials. A trial that raises (NaN loss, out of memory, a bug) is recorded
    as failed with its error and the search goes on; a pruned one is recorded as pruned."""
    best, best_summary, summaries = None, None, []
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0
    n = n_trials(method, fixed, config)
    if config.mode == "grid" and n > 1:
        _enqueue_grid(study, config.grid)
    for _ in range(n):
        trial = study.ask()
        params = suggest(trial, method, fixed, config)
        summary = {"number": trial.number, "params": params, "state": None, "dev": None,
                   "dev_loss": None, "best_step": None, "steps": None, "error": None,
                   "traceback": None, "seconds": None}  # fmt: skip
        start = time.perf_counter()
        try:
            result = run(method.hyperparameters({**fixed, **params}), _reporter(trial, summary))
        except optuna.TrialPruned:  # raised by the report hook below
            summary["state"] = "PRUNED"
            study.tell(trial, state=TrialState.PRUNED)
        except Exception as e:  # noqa: BLE001 - any failure of one trial is recorded, not fatal
            if is_disk_error(e):
                raise  # a full disk stops the sweep; it is not the trial's failure
            summary.update(state="FAIL", error=f"{type(e).__name__}: {e}",
                           traceback=traceback.format_exc(limit=-8))  # fmt: skip
            study.tell(trial, state=TrialState.FAIL)
            result = None
            _free_memory()
        else:
            _completed(summary, result, metric)
            study.tell(trial, summary["dev"])
            if best_summary is None or _rank(summary, sign) > _rank(best_summary, sign):
                best, best_summary = result, summary  # the previous best's model is dropped
        summary["seconds"] = round(time.perf_counter() - start, 3)
        summaries.append(summary)
    return Outcome(best, best_summary["number"] if best_summary else None, summaries)


def _enqueue_grid(study: optuna.Study, grid: Mapping[str, list]) -> None:
    """Every point of the grid, in the declared order. (Optuna's GridSampler cannot serve
    ask-and-tell: it calls ``study.stop()`` after the last point, which only works inside
    ``optimize``.)"""
    names = list(grid)
    for values in itertools.product(*(grid[name] for name in names)):
        study.enqueue_trial(dict(zip(names, values)))


def _reporter(trial: optuna.Trial, summary: dict) -> Callable[[int, float], None]:
    """The training loop's ``report(step, dev_score)`` hook: feeds the pruner, and keeps what
    a pruned trial reached (its best dev score so far, the steps it ran)."""
    better = max if trial.study.direction == optuna.study.StudyDirection.MAXIMIZE else min

    def report(step: int, score: float) -> None:
        summary["steps"] = step
        summary["dev"] = score if summary["dev"] is None else better(score, summary["dev"])
        trial.report(score, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")

    return report


def _completed(summary: dict, result, metric: str) -> None:
    at_best = [h for h in result.history if h["step"] == result.best_step]
    loss = at_best[0]["dev_loss"] if at_best else None
    summary.update(
        state="COMPLETE",
        dev=result.dev[metric],
        dev_loss=loss if loss is not None and math.isfinite(loss) else None,
        best_step=result.best_step,
        steps=result.history[-1]["step"] if result.history else 0,
    )


def _free_memory() -> None:
    """After a failed trial (e.g. out of memory), let its tensors go before the next one."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
