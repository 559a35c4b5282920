"""Sub-commands ``worker`` (one sweep worker on a PostgreSQL database: what a batch scheduler
runs N copies of, on any machines) and ``pull`` (the database's records into a results
folder, for ``tunebench report``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.app import command
from bench.cli.sweep_commands import (
    DEFAULT_LEASE_S,
    _plan,
    cell_line,
    lease_option,
    run_worker,
)
from bench.core.errors import TunebenchError


def _storage_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        required=True,
        help="the sweep's database: postgresql://user:password@host:port/database",
    )


def _worker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("profile", help="a profile in bench/sweep/profiles/ or a path to a .toml file")
    _storage_option(p)
    lease_option(p)
    p.add_argument(
        "--results", type=Path, default=Path("results"),
        help="this machine's results folder: records it finishes are written here too "
        "(default: results)",
    )  # fmt: skip
    p.add_argument(
        "--poll", type=float, default=5.0,
        help="seconds between looks when every cell left is leased by a live worker (default: 5)",
    )  # fmt: skip
    p.add_argument(
        "--retry-failed", action="store_true",
        help="delete the database's failed records of these cells and run them again",
    )  # fmt: skip
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--data-dir", help="data root (default: $TUNEBENCH_DATA, else ./data/original)")
    for name in ("tasks", "methods", "backbones", "seeds"):
        p.add_argument(f"--{name}", help=f"only these {name} of the profile (comma-separated)")


@command("worker", "run cells of a profile leased from a PostgreSQL database until none is left")(
    _worker_options
)
def cmd_worker(args) -> int:
    _check(args)
    profile, cells, _notes, root = _plan(args)
    run_worker(args, profile, cells, root, cell_line)
    return 0


def _check(args) -> None:
    from bench.sweep.db import is_db_url

    if not args.poll > 0:
        raise TunebenchError(f"--poll {args.poll:g}: must be a number of seconds above 0")

    if not is_db_url(args.storage):
        raise TunebenchError(
            f"--storage {args.storage!r}: a worker needs a PostgreSQL URL "
            "(postgresql://user:password@host:port/database); on one machine use "
            "`tunebench sweep --workers N`"
        )


def _pull_options(p: argparse.ArgumentParser) -> None:
    _storage_option(p)
    p.add_argument(
        "--results", type=Path, default=Path("results"), help="results folder (default: results)"
    )
    p.add_argument(
        "--force", action="store_true", help="replace records here that differ from the database's"
    )


@command("pull", "write every record of a PostgreSQL sweep database into a results folder")(
    _pull_options
)
def cmd_pull(args) -> int:
    from bench.sweep import db
    from bench.sweep.worker import pull

    if not db.is_db_url(args.storage):
        raise TunebenchError(
            f"--storage {args.storage!r}: pull reads a PostgreSQL URL "
            "(postgresql://user:password@host:port/database)"
        )
    _storage, engine = db.open_storage(args.storage, DEFAULT_LEASE_S)
    written, same = pull(db.Cells(engine, DEFAULT_LEASE_S), args.results, args.force)
    print(f"pull: {written} records written under {args.results}, {same} already there")
    return 0
