"""The single-machine store of a sweep: its folder, the Optuna journal file, and what a crash
or a full disk leaves behind.

- ``guard(folder)``: every sweep process holds a shared ``flock`` on ``<folder>/.sweep.lock``
  while it runs. The first one to start (it gets the lock exclusively: nobody else is
  running) first cleans up: a journal whose last line is torn (a write cut short by a full
  disk or a kill) is repaired, the torn tail moved aside to ``optuna.journal.torn-<UTC time>``
  and reported, never appended to; a stale Optuna lock file (``optuna.journal.lock``, left by
  a killed writer: Optuna waits 30 s before breaking it) and orphan temporary records
  (``.<record>.json.*.tmp``) are removed. Processes that start while others run clean nothing.
- ``check_free(folder)``: before each cell, at least ``$TUNEBENCH_MIN_FREE_MB`` (default 50)
  MiB free on the results' file system, or the sweep stops with a clear message: finished
  cells are kept and a rerun resumes.
- ``DISK_ERRNOS``: errors of the disk (full, quota, read-only, I/O) that stop a sweep instead
  of becoming a cell's failed record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.core.errors import TunebenchError

MIN_FREE_ENV = "TUNEBENCH_MIN_FREE_MB"
MIN_FREE_MB = 50.0
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
LOCK_NAME = ".sweep.lock"


class DiskError(TunebenchError):
    """The results' disk is full or failing: the sweep stops, nothing is recorded as failed."""


def disk_error(e: OSError, doing: str) -> DiskError:
    return DiskError(
        f"stopped {doing}: {e.strerror or e}"
        + (f" ({e.filename})" if e.filename else "")
        + "; free space (or fix the disk) and rerun: finished cells are kept and the sweep "
        "resumes where it stopped"
    )


def is_disk_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def min_free_bytes() -> float:
    text = os.environ.get(MIN_FREE_ENV)
    try:
        mb = float(text) if text else MIN_FREE_MB
    except ValueError:
        raise TunebenchError(f"${MIN_FREE_ENV}={text!r}: expected a number of MiB") from None
    return mb * 2**20


def check_free(folder: Path) -> None:
    """Stop cleanly when the results' file system has less than the minimum free."""
    need = min_free_bytes()
    free = shutil.disk_usage(folder).free
    if free < need:
        raise DiskError(
            f"only {free / 2**20:.1f} MiB free on the file system of {folder} (a cell needs "
            f"{need / 2**20:g} MiB, ${MIN_FREE_ENV}); free space and rerun: finished cells are "
            "kept and the sweep resumes where it stopped"
        )


@contextlib.contextmanager
def guard(folder: Path, journal: Path | None) -> Iterator[list[str]]:
    """Hold the sweep folder's shared lock; if no other sweep process holds it, clean up first.
    Yields the notes on what was cleaned (also printed to stderr)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if is_disk_error(e):
            raise disk_error(e, f"before starting in {folder}") from None
        raise TunebenchError(
            f"cannot write to the results folder {folder} ({e.strerror or e}); fix its "
            "permissions or pass --results elsewhere"
        ) from None
    notes: list[str] = []
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            fcntl.flock(fd, fcntl.LOCK_SH)  # others are running: they cleaned up
        else:
            try:
                notes = clean(folder, journal)
            except OSError as e:
                if is_disk_error(e):
                    raise disk_error(e, f"repairing {journal}") from None
                raise
            fcntl.flock(fd, fcntl.LOCK_SH)
        for note in notes:
            print(f"tunebench: {note}", file=sys.stderr)
        yield notes
    finally:
        os.close(fd)


def clean(folder: Path, journal: Path | None) -> list[str]:
    """What a crash left: a torn journal tail, a stale journal lock, orphan temporary records.
    Call only while no other sweep process runs on ``folder``."""
    notes = []
    if journal is not None:
        note = repair(journal)
        if note:
            notes.append(note)
        lock = Path(str(journal) + ".lock")  # Optuna's (a symlink or a file)
        if os.path.lexists(lock):
            lock.unlink()
            notes.append(f"removed a stale Optuna lock {lock} (left by a killed writer)")
    orphans = [p for p in folder.rglob(".*.tmp") if p.is_file()]
    for p in orphans:
        p.unlink(missing_ok=True)
    if orphans:
        notes.append(f"removed {len(orphans)} temporary file(s) of records cut short by a kill")
    return notes


def repair(journal: Path) -> str | None:
    """Cut a torn tail off the journal (a last line without its newline, or last lines that
    are not JSON), moving it aside to a dated file; the note to report, or None."""
    try:
        size = journal.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(journal, "rb") as f:
        data = f.read()
    keep = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
    while keep > 0:  # complete last lines that do not parse are torn too
        start = data.rfind(b"\n", 0, keep - 1) + 1
        try:
            json.loads(data[start:keep])
            break
        except ValueError:
            keep = start
    if keep == len(data):
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = journal.with_name(f"{journal.name}.torn-{stamp}")
    aside.write_bytes(data[keep:])
    with open(journal, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return (
        f"repaired {journal}: its last {len(data) - keep} bytes were a torn write (a full disk "
        f"or a kill); moved them to {aside}"
    )
