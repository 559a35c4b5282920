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
    name: str,
    storage,
    config: SearchConfig,
    higher_is_better: bool = True,
    resumable: bool = False,
    resume: bool = False,
) -> optuna.Study:
    """A fresh study for the cell. One left by an interrupted attempt is deleted first: the
    cell starts over with the same seeded sampler, so its record does not depend on when (or
    whether) it was interrupted.

    ``resumable`` (a database storage, where another worker may take a cell over): the sampler
    is seeded per trial slot (the number of trials counted before it), so that a resumed cell
    samples what an uninterrupted one does. ``resume`` (a cell taken over from a stalled or
    dead worker): the study is kept and its counted trials count."""
    seed = sampler_seed(name)
    if not resume:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass
    if config.mode == "grid":
        sampler = optuna.samplers.RandomSampler(seed=seed)  # never asked: all values are set
    elif resumable:
        sampler = _SlotSampler(lambda slot: optuna.samplers.TPESampler(
            n_startup_trials=config.tpe_startup_trials, seed=(seed + slot) % 2**32))  # fmt: skip
    else:
        sampler = optuna.samplers.TPESampler(n_startup_trials=config.tpe_startup_trials, seed=seed)
    return optuna.create_study(
        storage=storage, sampler=sampler, pruner=make_pruner(config), study_name=name,
        direction="maximize" if higher_is_better else "minimize", load_if_exists=resume,
    )  # fmt: skip


class _SlotSampler(optuna.samplers.BaseSampler):
    """TPE seeded afresh for each trial from the cell's seed and the trial's slot (how many
    counted trials precede it), so sampling does not depend on which process ran which trial.
    (One TPESampler carries its random state from trial to trial inside one process.)"""

    name = "TPESampler"

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler]):
        self._make, self._by_trial = make, {}

    def _for(self, study, trial) -> optuna.samplers.BaseSampler:
        if trial.number not in self._by_trial:
            slot = sum(counted(t) and t.number < trial.number for t in study.get_trials(False))
            self._by_trial[trial.number] = self._make(slot)
        return self._by_trial[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(study, trial).sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study, trial):
        self._for(study, trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self._for(study, trial).after_trial(study, trial, state, values)


def counted(trial) -> bool:
    """Whether a trial counts towards the cell's number of trials: finished by its own worker
    (its summary stored, the state told). A trial failed because its worker stopped
    heartbeating (stale) does not count; Optuna queues a retry of it with its parameters."""
    summary = trial.user_attrs.get("summary")
    if summary is None:
        return False
    told = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED, "FAIL": TrialState.FAIL}
    return trial.state == told.get(summary["state"])


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
        "sampler": "grid" if config.mode == "grid" else _sampler_name(study.sampler),
        "sampler_seed": sampler_seed(study.study_name),
        "tpe_startup_trials": config.tpe_startup_trials if config.mode == "tpe" else None,
        "pruner": type(study.pruner).__name__,
        "pruner_startup_trials": config.pruner_startup_trials if median else None,
        "pruner_warmup_steps": config.pruner_warmup_steps if median else None,
        "tie_rule": TIE_RULE,
        "study": study.study_name,
    } | ({"sampler_seeding": "per trial slot"} if isinstance(study.sampler, _SlotSampler) else {})


def _sampler_name(sampler) -> str:
    return getattr(sampler, "name", None) or type(sampler).__name__


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
    guard=None,
) -> Outcome:
    """Run the cell's trials. A trial that raises (NaN loss, out of memory, a bug) is recorded
    as failed with its error and the search goes on; a pruned one is recorded as pruned.

    A study taken over from another worker keeps its counted trials (``counted``); the search
    runs the rest, a stale trial's queued retry first. If the best trial was run by the other
    worker, its configuration is trained again here (training is deterministic from the seed)
    to be tested. ``guard`` (a lease heartbeat): told which trial runs (``start_trial``,
    ``end_trial``), and asked before each trial and at each dev evaluation whether the lease is
    still held (``check``)."""
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0
    n = n_trials(method, fixed, config)
    summaries = [t.user_attrs["summary"] for t in study.get_trials() if counted(t)]
    if config.mode == "grid" and n > 1 and not study.get_trials(deepcopy=False):
        _enqueue_grid(study, config.grid)
    results = {}  # trial number -> the runner's result, for trials run here
    while len(summaries) < n:
        if guard is not None:
            guard.check()
        trial = study.ask()
        params = suggest(trial, method, fixed, config)
        summary = {"number": trial.number, "params": params, "state": None, "dev": None,
                   "dev_loss": None, "best_step": None, "steps": None, "error": None,
                   "traceback": None, "seconds": None}  # fmt: skip
        retried = study._storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
        if retried is not None:
            summary["retry_of"] = retried  # its worker stopped mid-trial
        if guard is not None:
            guard.start_trial(trial._trial_id)
        start = time.perf_counter()
        state, value = None, None
        try:
            result = run(method.hyperparameters({**fixed, **params}),
                         _reporter(trial, summary, guard))  # fmt: skip
        except optuna.TrialPruned:  # raised by the report hook below
            summary["state"], state = "PRUNED", TrialState.PRUNED
        except Exception as e:  # noqa: BLE001 - any failure of one trial is recorded, not fatal
            if is_disk_error(e):
                raise  # a full disk stops the sweep; it is not the trial's failure
            summary.update(state="FAIL", error=f"{type(e).__name__}: {e}",
                           traceback=traceback.format_exc(limit=-8))  # fmt: skip
            state = TrialState.FAIL
            _free_memory()
        else:
            _completed(summary, result, metric)
            value = summary["dev"]
            results[trial.number] = result
        summary["seconds"] = round(time.perf_counter() - start, 3)
        trial.set_user_attr("summary", summary)
        study.tell(trial, value, state=state)
        if guard is not None:
            guard.end_trial()
        summaries.append(summary)
        _keep_only_best(results, summaries, sign)
    summaries.sort(key=lambda t: t["number"])
    done = [t for t in summaries if t["state"] == "COMPLETE"]
    if not done:
        return Outcome(None, None, summaries)
    best_summary = max(done, key=lambda t: _rank(t, sign))
    best = results.get(best_summary["number"])
    if best is None:  # run by the worker this cell was taken over from: train it again
        if guard is not None:
            guard.check()
        hp = method.hyperparameters({**fixed, **best_summary["params"]})
        best = run(hp, lambda step, score: guard.check() if guard is not None else None)
    return Outcome(best, best_summary["number"], summaries)


def _keep_only_best(results: dict, summaries: list[dict], sign: float) -> None:
    """Drop the models of trials that are not the best so far (one model in memory)."""
    done = [t for t in summaries if t["state"] == "COMPLETE"]
    if done:
        best = max(done, key=lambda t: _rank(t, sign))["number"]
        for number in [k for k in results if k != best]:
            del results[number]


def _enqueue_grid(study: optuna.Study, grid: Mapping[str, list]) -> None:
    """Every point of the grid, in the declared order. (Optuna's GridSampler cannot serve
    ask-and-tell: it calls ``study.stop()`` after the last point, which only works inside
    ``optimize``.)"""
    names = list(grid)
    for values in itertools.product(*(grid[name] for name in names)):
        study.enqueue_trial(dict(zip(names, values)))


def _reporter(trial: optuna.Trial, summary: dict, guard=None) -> Callable[[int, float], None]:
    """The training loop's ``report(step, dev_score)`` hook: feeds the pruner, and keeps what
    a pruned trial reached (its best dev score so far, the steps it ran)."""
    better = max if trial.study.direction == optuna.study.StudyDirection.MAXIMIZE else min

    def report(step: int, score: float) -> None:
        if guard is not None:
            guard.check()
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
