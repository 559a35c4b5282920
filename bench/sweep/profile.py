"""Sweep profiles: small TOML files that say what a sweep crosses and how hard it searches.

A profile is read as written, with no includes or inheritance. Its keys:

- ``description``; ``backbones``; ``tasks`` (names, or ``"whole"``: every task whose data
  is whole under the data root); ``k`` and ``seeds`` (lists); ``partial`` (true: tasks run on
  the partial samples, and their records say so).
- ``[search]``: the fields of ``bench.sweep.search.SearchConfig`` (mode, trials, pruner, ...).
- ``[settings]``: hyperparameters fixed for every method (e.g. steps, eval_every).
- ``methods``: ``"all"`` (every registered method with its defaults, on every backbone that
  can run it), or ``[[methods]]`` entries: ``method`` (a registered name) and, optionally,
  ``settings`` (method options and fixed hyperparameters, over the profile's), ``backbones``,
  ``trials`` and ``seeds`` (instead of the profile's; seeds a subset of its seeds, so the
  report counts the rest as not run), ``estimate_s`` (expected seconds per cell, shown
  by ``--dry-run`` and used by the progress bar's ETA).
- ``[overrides.<method>]`` (with ``methods = "all"`` only): settings for one method over the
  profile's, e.g. a small search budget for a method whose defaults are sized for real runs.
- ``steps`` (a list of training budgets, at the top or in a ``[[methods]]`` entry, the entry's
  first) crosses every method that trains with each budget: the fixed setting ``steps = N``,
  ``eval_every = max(1, N // evals_per_run)`` (``evals_per_run``, default 5: a dev curve of
  the same shape at every budget), and the label ``<method label>@<N>steps``, so each budget
  is its own row and record (budget curves: ``budget.toml``). Methods that do not train run
  once, unlabelled.

Fixed settings are never searched. ``plan`` turns a profile into cells, checking every name
and setting before any work starts.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from bench.core import validate
from bench.core.errors import BackboneError, TunebenchError
from bench.core.paths import component, inside
from bench.sweep.search import MODES, PRUNERS, SearchConfig, searched_names
from methods import REGISTRY, get_method
from tasks import TASKS, get_task
from tasks.readers import data_status

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

_TOP_KEYS = {"description", "backbones", "tasks", "k", "seeds", "partial", "methods", "search",
             "settings", "overrides", "steps", "evals_per_run"}  # fmt: skip
_ENTRY_KEYS = {"method", "settings", "backbones", "trials", "seeds", "estimate_s", "steps"}
BUDGET_MARK = "@"  # label of a budget row: "<method label>@<N>steps"
DEFAULT_EVALS_PER_RUN = 5


class ProfileError(TunebenchError):
    """A profile that cannot be read or names something unknown (the file is in the message)."""


@dataclass(frozen=True)
class Entry:
    """One method line of a profile."""

    method: str
    settings: dict
    backbones: tuple[str, ...] | None  # None: the profile's
    trials: int | None  # None: the search's
    estimate_s: float | None
    seeds: tuple[int, ...] | None = None  # None: the profile's
    steps: tuple[int, ...] | None = None  # training budgets to cross; None: the profile's


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    description: str
    backbones: tuple[str, ...]
    tasks: tuple[str, ...] | str  # or "whole"
    k: tuple[int, ...]
    seeds: tuple[int, ...]
    partial: bool
    search: SearchConfig
    settings: dict
    entries: tuple[Entry, ...] | str  # or "all"
    overrides: dict = dataclasses.field(default_factory=dict)  # method -> settings ("all")
    steps: tuple[int, ...] | None = None  # training budgets crossed with every trained method
    evals_per_run: int = DEFAULT_EVALS_PER_RUN


def packaged() -> list[str]:
    """Names of the profiles shipped in bench/sweep/profiles/."""
    folder = importlib.resources.files("bench.sweep") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str) -> Profile:
    """A packaged profile by name (``cpu``), or a .toml file by path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ProfileError(f"profile file {path} not found")
        text = path.read_text(encoding="utf-8")
    else:
        resource = importlib.resources.files("bench.sweep") / "profiles" / f"{name_or_path}.toml"
        if not resource.is_file():
            raise ProfileError(
                f"unknown profile {name_or_path!r}; choose one of: {', '.join(packaged())} "
                "(or give a path to a .toml file)"
            )
        path, text = Path(str(resource)), resource.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {path}: {e}") from None
    return parse(raw, path.stem, path)


def parse(raw: dict, name: str, path: Path) -> Profile:
    """Check every key and value of the profile (types, ranges, duplicates) and build it."""
    where = f"profile {path}"
    _only(raw, _TOP_KEYS, where)
    for key in ("backbones", "tasks", "k", "seeds", "methods"):
        if key not in raw:
            raise ProfileError(f"{where}: missing {key!r}")
    config = _search(raw.get("search", {}), where)
    seeds = tuple(_seeds(raw["seeds"], where, "seeds"))
    methods = raw["methods"]
    if isinstance(methods, str):
        if methods != "all":
            raise ProfileError(f'{where}: methods must be "all" or [[methods]] entries')
        entries = "all"
    elif isinstance(methods, list) and methods and all(isinstance(e, dict) for e in methods):
        entries = tuple(_entry(e, where) for e in methods)
        for e in entries:
            extra = sorted(set(e.seeds or ()) - set(seeds))
            if extra:
                raise ProfileError(
                    f"{where}: method {e.method}: seeds {extra} are not among the profile's "
                    f"seeds {raw['seeds']}"
                )
    else:
        raise ProfileError(f'{where}: methods must be "all" or [[methods]] entries')
    overrides = _overrides(raw.get("overrides", {}), entries, where)
    tasks = raw["tasks"]
    if isinstance(tasks, str) and tasks != "whole":
        raise ProfileError(f'{where}: tasks must be a list of names or "whole"')
    if not isinstance(tasks, str):
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
            raise ProfileError(f'{where}: tasks must be a non-empty list of names or "whole"')
        tasks = tuple(get_task(t).name for t in tasks)
        validate.unique(tasks, "tasks", where)
    settings = raw.get("settings", {})
    if not isinstance(settings, dict):
        raise ProfileError(f"{where}: [settings] must be a table of name = value")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ProfileError(f"{where}: description must be a string")
    return Profile(
        name=name,
        path=path,
        description=description,
        backbones=_backbones(raw["backbones"], where),
        tasks=tasks,
        k=tuple(_ints(raw["k"], "k", where, low=1)),
        seeds=seeds,
        partial=validate.boolean(raw.get("partial", False), "partial", where),
        search=config,
        settings=dict(settings),
        entries=entries,
        overrides=overrides,
        steps=_budgets(raw.get("steps"), where),
        evals_per_run=_positive(raw.get("evals_per_run", DEFAULT_EVALS_PER_RUN), where),
    )


_SEARCH_INTS = {"trials": 1, "tpe_startup_trials": 0, "pruner_startup_trials": 0,
                "pruner_warmup_steps": 0}  # fmt: skip


def _search(raw, where: str) -> SearchConfig:
    """The [search] table, every value checked (the grid's values are checked per method)."""
    where = f"{where} [search]"
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: must be a table")
    _only(raw, {f.name for f in dataclasses.fields(SearchConfig)}, where)
    for key, low in _SEARCH_INTS.items():
        if key in raw:
            validate.integer(raw[key], key, where, low=low)
    for key, allowed in (("mode", MODES), ("pruner", PRUNERS)):
        if key in raw and raw[key] not in allowed:
            raise ProfileError(f"{where} {key}={raw[key]!r}: expected one of {list(allowed)}")
    grid = raw.get("grid", {})
    if not isinstance(grid, dict):
        raise ProfileError(f"{where} grid: expected a table of name = [values]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ProfileError(
                f"{where}.grid {key}={values!r}: expected a non-empty list of values"
            )
        validate.unique(values, f"grid {key}", where)
    config = SearchConfig(**raw)
    if config.mode == "grid" and not config.grid:
        raise ProfileError(f"{where}: grid mode needs [search.grid] (name = [values])")
    return config


def _budgets(values, where: str) -> tuple[int, ...] | None:
    if values is None:
        return None
    if not values or not all(type(v) is int and v > 0 for v in _ints(values, "steps", where)):
        raise ProfileError(f"{where}: steps must be a non-empty list of positive integers")
    if len(set(values)) != len(values):
        raise ProfileError(f"{where}: steps {values} repeats a budget; list each once")
    return tuple(values)


def _positive(value, where: str) -> int:
    if type(value) is not int or value < 1:
        raise ProfileError(f"{where}: evals_per_run must be a positive integer, got {value!r}")
    return value


def _overrides(raw, entries, where: str) -> dict:
    if not raw:
        return {}
    if entries != "all":
        raise ProfileError(
            f'{where}: [overrides] is for methods = "all"; give a listed method its settings '
            "in its [[methods]] entry"
        )
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ProfileError(f"{where}: [overrides] holds one table of settings per method")
    for name in raw:
        get_method(name)  # unknown names are reported with the list of choices
    validate.unique(list(raw), "overrides", where)
    return {name: dict(settings) for name, settings in raw.items()}


def _entry(raw: dict, where: str) -> Entry:
    _only(raw, _ENTRY_KEYS, f"{where} [[methods]]")
    if "method" not in raw:
        raise ProfileError(f"{where}: a [[methods]] entry needs 'method'")
    get_method(raw["method"])  # the name is checked here, with the list of choices
    at = f"{where} [[methods]] {raw['method']}"
    backbones = raw.get("backbones")
    seeds = raw.get("seeds")
    trials, estimate_s = raw.get("trials"), raw.get("estimate_s")
    settings = raw.get("settings", {})
    if not isinstance(settings, dict):
        raise ProfileError(f"{at}: settings must be a table of name = value")
    return Entry(
        method=raw["method"],
        settings=dict(settings),
        backbones=_backbones(backbones, at) if backbones is not None else None,
        trials=validate.integer(trials, "trials", at, low=1) if trials is not None else None,
        estimate_s=validate.number(estimate_s, "estimate_s", at, low=0)
        if estimate_s is not None
        else None,
        seeds=tuple(_seeds(seeds, at, "seeds")) if seeds is not None else None,
        steps=_budgets(raw.get("steps"), at),
    )


def _only(table: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _backbones(names, where: str) -> tuple[str, ...]:
    from bench.backbones.catalog import get_spec

    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ProfileError(f"{where}: backbones must be a non-empty list of names")
    for name in names:
        get_spec(name)  # a catalog name, path:DIR or org/name; else the choices
    validate.unique(names, "backbones", where)
    return tuple(names)


def _ints(values, key: str, where: str, low: int | None = None, high: int | None = None):
    if not isinstance(values, list) or not values:
        raise ProfileError(f"{where}: {key} must be a non-empty list of integers")
    for v in values:
        validate.integer(v, key, where, low, high)
    validate.unique(values, key, where)
    return values


def _seeds(values, where: str, key: str) -> list[int]:
    return _ints(values, key, where, 0, validate.SEED_MAX)


# --- profile -> cells ------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepCell:
    """One cell of a sweep: (backbone, task, method label, K, seed), and how it is searched."""

    profile: str
    backbone: str
    task: str
    method: str
    label: str
    family: str
    k: int
    seed: int
    partial: bool
    settings: dict  # fixed (not searched): the profile's, then the entry's
    search: SearchConfig
    estimate_s: float | None
    planned_seeds: tuple[int, ...] | None = None  # the entry's seeds, when fewer than the profile's

    @property
    def name(self) -> str:
        task = self.task + ("-partial" if self.partial else "")
        return f"{self.backbone}/{task}/{self.label}/k{self.k}-seed{self.seed}"

    def record_path(self, results: Path) -> Path:
        """``<results>/<profile>/<backbone>/<task>/<label>/k<K>-seed<S>.json``, each name made
        one safe path component (a hub id's ``/``, a ``path:`` backbone), checked to stay
        inside ``results``."""
        task = self.task + ("-partial" if self.partial else "")
        parts = [component(n) for n in (self.profile, self.backbone, task, self.label)]
        return inside(results, Path(results).joinpath(*parts, f"k{self.k}-seed{self.seed}.json"))

    @property
    def study_name(self) -> str:
        return f"{self.profile}/{self.name}"


@dataclass(frozen=True)
class Skipped:
    """A (backbone, task, method) a profile with ``methods = "all"`` leaves out, and why."""

    backbone: str
    task: str
    method: str
    label: str
    reason: str

    def __str__(self) -> str:
        return f"{self.label} on {self.backbone}, {self.task}: not applicable ({self.reason})"


def plan(profile: Profile, data_root: Path | None) -> tuple[list[SweepCell], list[Skipped]]:
    """The profile's cells, in the order they run: backbone, task, method, K, then seed, so
    one method's seeds run one after another (frozen features and zero-shot test passes come
    from the in-process cache); and notes on what was left out because the method cannot run
    on the backbone or task (``methods = "all"`` only; a listed one is an error)."""
    cells, notes, seen = [], [], set()
    for backbone in _all_backbones(profile):
        for task in _tasks(profile, data_root):
            for entry, budget in _entries_and_budgets(profile):
                if backbone not in (entry.backbones or profile.backbones):
                    continue
                run = _method_run(profile, entry, backbone, task, notes, budget)
                if run is None:
                    continue
                method, label, settings, search = run
                for k in profile.k:
                    for seed in entry.seeds or profile.seeds:
                        cell = SweepCell(profile.name, backbone, task, method.name, label,
                                         method.family, k, seed, profile.partial, settings,
                                         search, entry.estimate_s, entry.seeds)  # fmt: skip
                        if cell.name in seen:
                            raise ProfileError(
                                f"profile {profile.path}: two method entries make the cell "
                                f"{cell.name} (same method label); give them different options"
                            )
                        seen.add(cell.name)
                        cells.append(cell)
    return cells, notes


def _entries_and_budgets(profile: Profile) -> list[tuple[Entry, int | None]]:
    """Each entry with each training budget it is crossed with (None: run once, as its
    settings say; a method that does not train is not crossed)."""
    out = []
    for entry in _entries(profile):
        steps = entry.steps or profile.steps
        budgets = steps if steps and get_method(entry.method).trains else (None,)
        out += [(entry, b) for b in budgets]
    return out


def budget_settings(steps: int, evals_per_run: int) -> dict:
    """The fixed settings of one training budget: ``steps`` and a dev evaluation every
    ``steps // evals_per_run`` steps (at least 1; the last step is always evaluated)."""
    return {"steps": steps, "eval_every": max(1, steps // evals_per_run)}


def _method_run(
    profile: Profile,
    entry: Entry,
    backbone: str,
    task: str,
    notes: list[str],
    budget: int | None = None,
):
    """(method, label, fixed settings, search) for an entry on ``backbone`` and ``task`` (at
    training budget ``budget`` steps, if given); None (with a note) if the method cannot run
    there and the profile takes "all" methods."""
    method = get_method(entry.method)
    settings = {**profile.settings, **entry.settings}
    if budget is not None:
        settings.update(budget_settings(budget, profile.evals_per_run))
    _hyperparameters(method, profile.settings, profile, "[settings]")  # each value, named
    at = f"[overrides.{method.name}]" if profile.entries == "all" else f"[[methods]] {method.name}"
    hp = _hyperparameters(method, settings, profile, f"{at} settings")
    reason = refusal(method, backbone, task, hp)
    if reason and profile.entries == "all":
        notes.append(Skipped(backbone, task, method.name, method.label(hp), reason))
        return None
    if reason:
        raise ProfileError(f"profile {profile.path}: {task}: {reason}")
    search = profile.search
    if entry.trials is not None:
        search = dataclasses.replace(search, trials=entry.trials)
    _check_fixed(method, settings, search, profile)
    label = method.label(hp) + (f"{BUDGET_MARK}{budget}steps" if budget is not None else "")
    return method, label, settings, search


def _all_backbones(profile: Profile) -> list[str]:
    names = list(profile.backbones)
    for entry in _entries(profile):
        names += [b for b in entry.backbones or () if b not in names]
    return names


def _entries(profile: Profile) -> tuple[Entry, ...]:
    if profile.entries == "all":
        return tuple(
            Entry(name, profile.overrides.get(name, {}), None, None, None) for name in REGISTRY
        )
    return profile.entries


def _tasks(profile: Profile, data_root: Path | None) -> list[str]:
    if profile.tasks == "whole":
        return [t.name for t in TASKS.values() if data_status(t, data_root) == "whole"]
    return list(profile.tasks)


def missing_data(profile: Profile, data_root: Path | None) -> list[str]:
    """Tasks of the profile whose data is not there as the profile needs it (whole, or the
    partial sample), each with what was found."""
    wanted = "partial" if profile.partial else "whole"
    out = []
    for name in _tasks(profile, data_root):
        status = data_status(get_task(name), data_root)
        if status != wanted:
            out.append(f"{name} (needs {wanted} data, found {status})")
    return out


def _hyperparameters(method, settings: dict, profile: Profile, table: str) -> dict:
    """The method's hyperparameters with ``settings``; a bad value is named with the profile
    file and its table (``profile p.toml [settings] steps=0: expected an integer >= 1``)."""
    try:
        return method.hyperparameters(settings, source=f"profile {profile.path} {table}")
    except validate.SettingError:
        raise
    except TunebenchError as e:
        raise ProfileError(f"profile {profile.path} {table}: {e}") from None


def _check_fixed(method, settings: dict, search: SearchConfig, profile: Profile) -> None:
    clash = sorted(set(search.grid) & set(settings)) if search.mode == "grid" else []
    if clash:
        raise ProfileError(
            f"profile {profile.path}: {method.name}: {clash} are both fixed and on the grid"
        )
    if search.mode == "tpe" and method.trains and search.trials < 1:
        raise ProfileError(f"profile {profile.path}: {method.name}: trials must be at least 1")
    if search.mode == "grid" and method.trains:  # every grid value, as a setting of the method
        for key, values in search.grid.items():
            for value in values:
                _hyperparameters(method, {**settings, key: value}, profile, "[search.grid]")
    searched_names(method, settings, search)  # the space runs on these settings


@functools.cache
def _meta_backbone(name: str):
    """The backbone with its weights on the meta device (no memory, no network)."""
    from bench.backbones.catalog import Backbone, build_meta, get_spec

    return Backbone(get_spec(name), build_meta(name), tokenizer=None)


def refusal(method, backbone: str, task: str, hp: dict) -> str | None:
    """Why ``method`` cannot run on ``backbone`` for ``task``, or None: an LM-head method on
    an encoder, BitFit without bias terms, a template a causal LM cannot read (text after the
    answer slot: the sentence-pair tasks have no causal variant), ..."""
    from bench.engine.prompts import _check_answer_last
    from methods.base import task_prompt

    model = _meta_backbone(backbone)
    reason = method.refuse_task(get_task(task))
    if reason:
        return f"method {method.name} cannot run on task {task}: {reason}"
    try:
        method.check(model, hp)
        if model.kind == "causal" and method.reads_lm_head(hp):
            _check_answer_last(task_prompt(model, get_task(task), hp))
    except BackboneError as e:
        return str(e)
    return None
