"""Sub-commands ``sweep`` (search every cell of a profile; resumable) and ``reproduce`` (re-run
every cell of a profile into a fresh folder, then compare with the committed records: what
``make reproduce`` runs)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.cli.app import _print_table, command
from bench.core.errors import TunebenchError

# the packaged profiles' names, read without importing the sweep (arguments come before heavy
# imports); bench.sweep.profile.packaged() is the same list
_PACKAGED = sorted(
    p.stem for p in (Path(__file__).parents[1] / "sweep" / "profiles").glob("*.toml")
)


def _options(p: argparse.ArgumentParser, default_profile: str | None = None) -> None:
    p.add_argument(
        "profile",
        nargs="?" if default_profile else None,
        default=default_profile,
        help=f"a profile in bench/sweep/profiles/ ({', '.join(_PACKAGED)}) or a path to a .toml "
        "file" + (f" (default: {default_profile})" if default_profile else ""),
    )
    p.add_argument(
        "--results", type=Path, default=Path("results"), help="results folder (default: results)"
    )
    p.add_argument(
        "--storage",
        help="Optuna storage: a journal file path (default: <results>/<profile>/optuna.journal) "
        "or postgresql://user:pass@host/db (many machines: the database leases the cells and "
        "stores the records, as `tunebench worker` does)",
    )
    lease_option(p)
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes on this machine (default: 1)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print each cell and its state; run nothing"
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="delete failed cells' records and rerun them"
    )
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument(
        "--device-memory",
        help="with --dry-run: the device's memory (e.g. 24GiB; default: the CUDA device's, if "
        "any); cells whose predicted peak does not fit are refused",
    )
    p.add_argument("--threads", type=int, help="torch threads per worker (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (lines only)")
    p.add_argument("--data-dir", help="data root (default: $TUNEBENCH_DATA, else ./data/original)")
    for name, what in (("tasks", "task"), ("methods", "method (registry name or label)"),
                       ("backbones", "backbone"), ("seeds", "seed")):  # fmt: skip
        p.add_argument(
            f"--{name}",
            help=f"only these cells: comma-separated {what}s of the profile (a subset that "
            "resumes like the whole, e.g. `tunebench sweep cpu-all --tasks SST-2`)",
        )
    p.add_argument("--pool-worker", action="store_true", help=argparse.SUPPRESS)  # --workers N


@command("sweep", "search hyperparameters of every cell of a profile; one record per cell")(
    _options
)
def cmd_sweep(args) -> int:
    profile, cells, notes, root = _plan(args)
    if args.dry_run:
        return _dry_run(profile, cells, notes, args.results, root, args)
    return _sweep(args, profile, cells, root)


def _reproduce_options(p: argparse.ArgumentParser) -> None:
    _options(p, default_profile="cpu")
    p.add_argument(
        "--out",
        type=Path,
        help="the fresh folder the cells are re-run into (default: "
        "<results>/reproduce/<profile>-<UTC time>/); an existing one resumes",
    )


@command(
    "reproduce",
    "re-run every cell of a profile into a fresh folder, then compare with the committed "
    "records under <results>/<profile>/ (what `make reproduce` runs)",
)(_reproduce_options)
def cmd_reproduce(args) -> int:
    """Exit 0 when every re-run cell is identical or within its seed std of the committed one,
    1 when one differs."""
    from bench.report.compare import DIFFERENT, compare, lines
    from bench.report.make import make_report

    profile, cells, notes, root = _plan(args)
    reference = args.results / profile.name
    out = args.out or args.results / "reproduce" / f"{profile.name}-{_utc_stamp()}"
    if out.resolve() == args.results.resolve():
        raise TunebenchError(
            f"--out {out}: that is the results folder itself, whose records count as done, so "
            "nothing would re-run; give a fresh folder (default: <results>/reproduce/...)"
        )
    rerun = argparse.Namespace(**{**vars(args), "results": out})
    if args.dry_run:
        print(f"re-run into {out}, then compare with {reference}")
        return _dry_run(profile, cells, notes, out, root, args)
    print(f"reproduce {profile.name}: re-running {len(cells)} cells into {out}")
    _sweep(rerun, profile, cells, root)
    paths = make_report(out)
    print(f"report of the re-run: {len(paths)} files under {out}")
    if not reference.is_dir():
        print(f"no committed records under {reference}: nothing to compare with")
        return 0
    print(f"\ncompared with {reference}, cell by cell:")
    comp = compare(reference, out / profile.name)
    print("\n".join(lines(comp)))
    return 1 if comp.count(DIFFERENT) else 0


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _plan(args):
    from bench.cli.names import check_common

    check_common(args)  # --workers, --threads, --device: before the heavy imports

    from bench.sweep.driver import quiet
    from bench.sweep.profile import load, plan
    from tasks.readers import data_root

    quiet()
    profile = load(args.profile)
    root = data_root(args.data_dir)
    cells, notes = plan(profile, root)
    if not cells:
        raise TunebenchError(f"profile {profile.name} has no cells (check its tasks and data)")
    return profile, _only(cells, args), _only_notes(notes, args), root


# --tasks/--methods/--backbones/--seeds: what each keeps of a cell (or a skipped method)
_SUBSET = (
    ("tasks", lambda c: {c.task}),
    ("methods", lambda c: {c.method, c.label}),
    ("backbones", lambda c: {c.backbone}),
    ("seeds", lambda c: {str(c.seed)}),
)


def _wanted(args, option: str) -> set[str]:
    return {w.strip() for w in (getattr(args, option, None) or "").split(",") if w.strip()}


def _only_notes(notes: list, args) -> list:
    """The "not applicable" notes (``bench.sweep.profile.Skipped``) about cells the subset options
    would keep; they have no seed."""
    filters = [
        (values_of, wanted)
        for option, values_of in _SUBSET
        if option != "seeds" and (wanted := _wanted(args, option))
    ]
    return [n for n in notes if all(values_of(n) & wanted for values_of, wanted in filters)]


def _only(cells: list, args) -> list:
    """The cells that ``--tasks``/``--methods``/``--backbones``/``--seeds`` keep; a name the
    profile does not have is an error that lists the ones it has."""
    for option, values_of in _SUBSET:
        names = _wanted(args, option)
        if not names:
            continue
        known = set().union(*(values_of(c) for c in cells))
        missing = sorted(names - known)
        if missing:
            raise TunebenchError(
                f"--{option}: {', '.join(missing)} not in this profile; it has: "
                + ", ".join(sorted(known))
            )
        cells = [c for c in cells if values_of(c) & names]
    return cells


# --- dry run ---------------------------------------------------------------------------------


def _dry_run(profile, cells, notes, results: Path, root: Path, args) -> int:
    from bench.run.memory import fits, format_bytes
    from bench.sweep.driver import STATES, estimate, state
    from bench.sweep.profile import missing_data

    device, budget = _memory_target(args)
    peaks = _peaks(cells, device)
    counts, left, unknown, too_big = defaultdict(int), 0.0, 0, []
    for cell in cells:
        st, detail = state(cell, results)
        counts[st] += 1
        est = estimate(cell, results)
        if st == "to do":
            left += est or 0.0
            unknown += est is None
        shown = f"~{_duration(est)}" if est is not None and st == "to do" else ""
        peak = peaks[cell.name]
        if budget is not None and st == "to do" and fits(peak, budget):
            too_big.append(fits(peak, budget))
            detail = "does not fit: " + detail if detail else "does not fit"
        line = f"{st:<8} {cell.name:<60} {shown:>9}  {format_bytes(peak.peak):>10}  {detail}"
        print(line.rstrip())
    for note in notes:
        print(f"skipped  {note}")
    print(
        f"\nprofile {profile.name} ({profile.path}): {len(cells)} cells: "
        + ", ".join(f"{counts[s]} {s}" for s in STATES)
    )
    if counts["to do"] and unknown == counts["to do"]:
        print(
            "estimated time for the cells to do: unknown (no estimate_s in the profile, "
            "and no finished records of these methods yet)"
        )
    elif counts["to do"]:
        more = f", plus {unknown} cells without an estimate" if unknown else ""
        print(f"estimated time for the cells to do: {_duration(left)}{more}")
    on = f"of {format_bytes(budget)}" if budget is not None else "(no device memory to check)"
    print(
        f"predicted peak memory per cell ({device}, {on}): `tunebench memory` for the cell's "
        "largest batch at its max length and precision"
    )
    missing = missing_data(profile, root)
    if missing:
        print("missing data (a sweep would refuse to start): " + ", ".join(missing))
    if too_big:
        raise TunebenchError(
            f"{len(too_big)} cells to do cannot fit in the device's memory; first: {too_big[0]}"
        )
    return 0


def _memory_target(args) -> tuple[str, int | None]:
    """The device the cells would run on, and its memory (given, or the CUDA device's)."""
    import torch

    from bench.run.memory import parse_size

    given = getattr(args, "device_memory", None)
    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    if given:
        return "cuda" if cuda or args.device is None else "cpu", parse_size(given)
    if cuda and torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_properties(0).total_memory
    return ("cuda" if cuda else "cpu"), None


def _peaks(cells, device: str) -> dict:
    """The predicted peak of each cell at the largest batch it may train with (the grid's,
    or the fixed or default batch size), at its max length and precision (the run's setting
    where there is one, else fp32); once per backbone, method, settings, length and batch."""
    from bench.run.memory import estimate
    from methods import get_method
    from tasks import get_task

    out, cache = {}, {}
    for cell in cells:
        method, task = get_method(cell.method), get_task(cell.task)
        hp = method.hyperparameters(cell.settings)
        grid = cell.search.grid.get("batch_size", []) if cell.search.mode == "grid" else []
        grid = grid if method.trains else []  # untrained methods run at their batch size
        batch = max([int(b) for b in grid] + [int(hp["batch_size"])])
        key = (cell.backbone, cell.method, repr(sorted(hp.items())), task.max_length, batch)
        if key not in cache:
            cache[key] = estimate(cell.backbone, method, task, cell.settings, batch_size=batch,
                                  device=device)  # fmt: skip
        out[cell.name] = cache[key]
    return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --- sweeping --------------------------------------------------------------------------------


def _sweep(args, profile, cells, root) -> int:
    from bench.core.paths import component
    from bench.sweep import journal
    from bench.sweep.driver import default_storage
    from bench.sweep.profile import missing_data

    missing = missing_data(profile, root)
    if missing:
        raise TunebenchError(f"profile {profile.name}: data missing for " + ", ".join(missing))
    storage = args.storage or str(default_storage(args.results, profile.name))
    folder = args.results / component(profile.name)
    with journal.guard(folder, None if "://" in storage else Path(storage)):
        return _sweep_held(args, profile, cells, root, storage)


def _sweep_held(args, profile, cells, root, storage: str) -> int:
    from bench.sweep import search
    from bench.sweep.db import is_db_url
    from bench.sweep.driver import Context, read_record, state

    if args.retry_failed:
        for cell in cells:
            if state(cell, args.results)[0] == "failed":
                cell.record_path(args.results).unlink(missing_ok=True)
    todo = [c for c in cells if read_record(c.record_path(args.results)) is None]
    start = time.perf_counter()
    if args.workers > 1:
        _run_workers(args, profile, len(todo))
    elif is_db_url(storage):  # the database coordinates: this process is one worker
        run_worker(args, profile, cells, root, cell_line)
    else:
        ctx = Context(args.results, search.open_storage(storage),
                      search.describe_storage(storage), root, _device(args))  # fmt: skip
        _run_here(profile, todo, ctx, not (args.no_progress or args.pool_worker))
    if args.pool_worker:
        return 0  # the parent process sums up
    left = sum(read_record(c.record_path(args.results)) is None for c in cells)
    print(
        f"sweep {profile.name}: {len(cells) - len(todo)} cells were done before; "
        f"{len(todo)} to do took {_duration(time.perf_counter() - start)}"
        + (f"; {left} still running in other workers" if left else "")
    )
    _budget_table(cells, args.results)
    return 0


def _device(args):
    import torch

    from bench.backbones.cache import default_device

    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device) if args.device else default_device()


def _run_here(profile, todo, ctx, progress: bool) -> None:
    """This process works through the cells: one bar over cells, one line per cell run."""
    from tqdm import tqdm

    from bench.sweep.driver import estimate, sweep

    estimates = [estimate(c, ctx.results) for c in todo]
    weights = estimates if all(e is not None for e in estimates) else [1.0] * len(todo)
    bar = tqdm(
        total=sum(weights),
        desc=f"sweep {profile.name}",
        bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]",
        disable=None if progress else True,  # None: only on a terminal
    )
    bar.set_postfix_str(f"0/{len(todo)} cells")
    weight = {c.name: w for c, w in zip(todo, weights)}
    for i, (cell, record) in enumerate(sweep(todo, ctx), start=1):
        bar.update(weight[cell.name])
        bar.set_postfix_str(f"{i}/{len(todo)} cells")
        if record is not None:
            bar.write(cell_line(cell, record), file=sys.stdout)
            sys.stdout.flush()
    bar.close()


def _run_workers(args, profile, n_todo: int) -> None:
    """``--workers N``: N worker processes split the cells through claims; this one shows
    the bar (records appearing) and waits."""
    import os

    from tqdm import tqdm

    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    argv = [sys.executable, "-m", "bench", "sweep", args.profile, "--results",
            str(args.results), "--pool-worker", "--threads", str(threads)]  # fmt: skip
    for flag, value in (("--storage", args.storage), ("--device", args.device),
                        ("--data-dir", args.data_dir), ("--tasks", args.tasks),
                        ("--methods", args.methods), ("--backbones", args.backbones),
                        ("--seeds", args.seeds),
                        ("--lease-timeout", str(args.lease_timeout))):  # fmt: skip
        if value:
            argv += [flag, value]
    procs = [subprocess.Popen(argv) for _ in range(args.workers)]
    from bench.core.paths import component

    folder = args.results / component(profile.name)
    before = _count_records(folder)
    bar = tqdm(total=n_todo, desc=f"sweep {profile.name}", unit="cell",
               disable=True if args.no_progress else None)  # fmt: skip
    while any(p.poll() is None for p in procs):
        time.sleep(2)
        bar.n = min(n_todo, _count_records(folder) - before)
        bar.refresh()
    bar.close()
    failed = [p.returncode for p in procs if p.returncode]
    if failed:
        raise TunebenchError(f"{len(failed)} of {args.workers} workers exited with an error")


def _count_records(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*.json") if not p.name.startswith("."))


# --- lines and tables ------------------------------------------------------------------------


def cell_line(cell, record: dict) -> str:
    """One line per finished cell: cell, chosen hyperparameters, dev, test, trials, time."""
    trials = record["trials"]
    pruned = sum(t["state"] == "PRUNED" for t in trials)
    failed = sum(t["state"] == "FAIL" for t in trials)
    extra = ", ".join(f"{n} {s}" for n, s in ((pruned, "pruned"), (failed, "failed")) if n)
    took = f"trials {len(trials)}" + (f" ({extra})" if extra else "")
    took += f", {_duration(record['time']['total_s'])}"
    if record["status"] != "ok":
        return f"{cell.name}  FAILED: {record['error']}  [{took}]"
    metric = record["primary_metric"]
    chosen = [t for t in trials if t["number"] == record["search"]["chosen_trial"]][0]
    params = " ".join(f"{k}={_short(v)}" for k, v in chosen["params"].items()) or "(no search)"
    return (
        f"{cell.name}  {params}  dev {metric} {record['dev'][metric]:.4f}  "
        f"test {metric} {record['test_score']:.4f}  [{took}]"
    )


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _budget_table(cells, results: Path) -> None:
    """How the budget was spent, per backbone and method: cells, trials, steps, time."""
    from bench.sweep.driver import read_record

    rows: dict = {}
    for cell in cells:
        record = read_record(cell.record_path(results))
        if record is None:
            continue
        row = rows.setdefault((cell.backbone, cell.label), defaultdict(float))
        row["cells"] += 1
        row["failed cells"] += record["status"] != "ok"
        for t in record["trials"]:
            row["trials"] += 1
            row["pruned"] += t["state"] == "PRUNED"
            row["failed"] += t["state"] == "FAIL"
            row["steps"] += t["steps"] or 0
        row["search s"] += record["time"].get("search_s") or 0.0
        row["test s"] += record["time"].get("eval_s") or 0.0
        row["total s"] += record["time"].get("total_s") or 0.0
    if not rows:
        return
    table = [
        {"backbone": b, "method": m, **{k: f"{v:.0f}" for k, v in r.items()}}
        for (b, m), r in rows.items()
    ]
    columns = ["backbone", "method", "cells", "failed cells", "trials", "pruned", "failed",
               "steps", "search s", "test s", "total s"]  # fmt: skip
    print()
    _print_table([{c: row.get(c, "0") for c in columns} for row in table], columns)
    total = sum(r["total s"] for r in rows.values())
    print(f"sum of cell times: {_duration(total)} (test s: the chosen trial's test pass)")


# --- on PostgreSQL (also `tunebench worker`, bench/cli/worker_commands.py) -------------------

DEFAULT_LEASE_S = 300.0


def lease_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lease-timeout",
        type=float,
        default=DEFAULT_LEASE_S,
        help="seconds without a heartbeat after which another worker takes a cell over "
        f"(default: {DEFAULT_LEASE_S:g}; heartbeats every fifth of it)",
    )


def _check_lease(args) -> None:
    if not args.lease_timeout >= 2:
        raise TunebenchError(
            f"--lease-timeout {args.lease_timeout:g}: must be at least 2 seconds "
            "(heartbeats come every fifth of it)"
        )


def run_worker(args, profile, cells, root, line) -> None:
    """One worker on ``args.storage`` over ``cells``; prints what it did."""
    from bench.sweep import db
    from bench.sweep.driver import Context, read_record
    from bench.sweep.profile import missing_data
    from bench.sweep.worker import Worker

    _check_lease(args)
    missing = missing_data(profile, root)
    if missing:
        raise TunebenchError(f"profile {profile.name}: data missing for " + ", ".join(missing))
    storage, engine = db.open_storage(args.storage, args.lease_timeout)
    ctx = Context(args.results, storage, db.describe(args.storage), root, _device(args))
    cells_db = db.Cells(engine, args.lease_timeout)
    if getattr(args, "retry_failed", False):
        again = set(cells_db.forget_failed([c.study_name for c in cells]))
        for cell in cells:  # this machine's copies of them too
            path = cell.record_path(args.results)
            if cell.study_name in again and (read_record(path) or {}).get("status") != "ok":
                path.unlink(missing_ok=True)
        print(f"--retry-failed: {len(again)} failed records deleted from the database; "
              "their cells run again")  # fmt: skip
    worker = Worker(ctx, cells_db, args.lease_timeout,
                    getattr(args, "poll", 5.0))  # fmt: skip
    counts = worker.run(cells, line)
    worker.say(
        f"profile {profile.name}: ran {counts['ran']} cells ({counts['taken over']} taken over "
        f"from stale workers), lost {counts['lost']} leases, retried {counts['trials retried']} "
        "trials"
    )
