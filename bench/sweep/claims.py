"""Which worker runs which cell, across processes (and machines sharing the results folder).

A worker claims a cell by holding an exclusive ``flock`` on ``<record>.claim`` (next to where
the cell's record will go) for as long as it runs the cell. The file says who holds it (pid,
host, time) for people and for ``--dry-run``; the lock is what counts. The kernel drops the
lock when the process ends, however it ends (SIGKILL included), so a dead worker's claim is
free for the next worker at once: no pid checks, no stale-claim takeover race.

The holder writes the record, then removes the claim file, then unlocks. A worker that gets a
claim checks that the file is still the one at the path (not one just removed) and the caller
checks that no record exists yet; so no cell is run twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from bench.core.errors import TunebenchError
from bench.run.record import now
from bench.sweep.journal import disk_error, is_disk_error


def claim_path(record: Path) -> Path:
    return record.with_suffix(".claim")


@contextlib.contextmanager
def claim(record: Path) -> Iterator[bool]:
    """Yield True while this process holds the cell whose record goes to ``record``; False
    (at once, without waiting) if another live process holds it."""
    path = claim_path(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _lock(path)
    if fd is None:
        yield False
        return
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": now()}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(holder) + "\n").encode())
        except OSError as e:
            if is_disk_error(e):
                raise disk_error(e, f"claiming {record}") from None
            raise
        yield True
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a later claimant makes a new file
        os.close(fd)


def _lock(path: Path) -> int | None:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return None  # held by a live process
            raise TunebenchError(
                f"cannot lock {path} ({e.strerror}); the results folder must be on a file "
                "system with flock() locks (local disks, NFSv4)"
            ) from e
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # the holder finished and removed it between our open and our lock


def holder(record: Path) -> dict | None:
    """Who holds the cell's claim, for display: {pid, host, since, alive}, or None if no claim
    file. ``alive`` is checked for this host's processes only (None: another host)."""
    path = claim_path(record)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError:  # created a moment ago, not written yet
        return {"pid": None, "host": None, "since": None, "alive": True}
    if info.get("host") != socket.gethostname():
        return {**info, "alive": None}
    return {**info, "alive": _pid_alive(info["pid"])}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
