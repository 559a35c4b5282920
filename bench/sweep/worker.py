"""A sweep worker on a PostgreSQL database: the database says which cells are left, leases
them one at a time (bench/sweep/db.py) and stores their records; nothing assumes a shared
file system. Any number of workers on any number of machines run the same loop:

1. read which cells are done or leased; stop (exit 0) when every cell is done;
2. claim the first cell that nobody holds or whose lease is stale (taken over from a worker
   that stopped heartbeating), and run it while a thread heartbeats the lease and the running
   Optuna trial; a cell taken over continues its study: the stale trial is failed and retried
   with its parameters (Optuna's heartbeat and ``RetryHeartbeatStaleTrialCallback``);
3. store the record if the lease is still this worker's (else drop it: another worker took the
   cell over), then write it to this worker's results folder, the same bytes;
4. when every cell left is leased by a live worker, wait (``poll_s``) and look again: one of
   them may die, and its cell is then taken over here.

Each event is one line on stdout (``worker <holder>: ...``), for logs of many machines.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.core.errors import TunebenchError
from bench.core.io import atomic_write_bytes
from bench.sweep import db as dbmod
from bench.sweep.driver import Context, run_cell
from bench.sweep.profile import SweepCell


def record_text(record: dict) -> str:
    """A record's file content: the same bytes as ``bench.core.io.atomic_write_json`` writes."""
    return json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def relative_path(cell: SweepCell) -> str:
    return cell.record_path(Path(".")).as_posix()


class Worker:
    def __init__(self, ctx: Context, cells_db: dbmod.Cells, lease_timeout: float,
                 poll_s: float = 5.0, say: Callable[[str], None] | None = None):  # fmt: skip
        self.ctx, self.db, self.lease_timeout, self.poll_s = ctx, cells_db, lease_timeout, poll_s
        self.interval = dbmod.heartbeat_interval(lease_timeout)
        # ask-and-tell with heartbeats is what this module is for; the heartbeats are ours
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        self.counts: Counter = Counter()
        self._say = say or (lambda line: print(line, flush=True))

    def say(self, text: str) -> None:
        self._say(f"worker {self.db.holder} ({self.db.host} pid {self.db.pid}): {text}")

    def run(self, cells: list[SweepCell], line: Callable[[SweepCell, dict], str] = None) -> Counter:
        """Work until every cell has a record in the database. Returns the counts of what this
        worker did: ran, took over, lost, waited."""
        keys = {c.study_name: c for c in cells}
        if len(keys) != len(cells):
            raise TunebenchError("two cells share a study name; check the profile")
        while True:
            states = self.db.states(list(keys))
            left = [c for c in cells if states.get(c.study_name) != "done"]
            if not left:
                self.say(f"no cell left ({len(cells)} done); exiting")
                return self.counts
            ran = False
            for cell in left:
                if states.get(cell.study_name) == "running":
                    continue  # leased by a live worker (as of the read above)
                lease = self.db.claim(cell.study_name)
                if isinstance(lease, str):
                    continue
                ran = True
                self._run_leased(cell, lease, line)
                states = self.db.states(list(keys))  # the world moved while the cell ran
            if not ran:
                self.counts["waits"] += 1
                time.sleep(self.poll_s)

    def _run_leased(self, cell: SweepCell, lease: dbmod.Lease, line) -> None:
        if lease.taken_from:
            self.counts["taken over"] += 1
            self.say(f"took over {cell.name} from {lease.taken_from} (lease generation "
                     f"{lease.generation}, its heartbeat older than {self.lease_timeout:g} s)")  # fmt: skip
        else:
            self.say(f"claimed {cell.name}")
        try:
            with dbmod.Heartbeat(self.db, lease, self.ctx.storage, self.interval) as beat:
                if lease.generation > 1:
                    self._settle(cell)
                record = run_cell(cell, self.ctx, guard=beat, resume=lease.generation > 1)
                beat.check()
            body = record_text(record)
            stored = self.db.finish(lease, relative_path(cell), body)
        except dbmod.LeaseLost:
            stored = False
        if not stored:
            self.counts["lost"] += 1
            self.say(f"lost the lease of {cell.name} to another worker; its result is dropped")
            return
        self.counts["ran"] += 1
        retried = [t for t in record["trials"] if "retry_of" in t]
        if retried:
            self.counts["trials retried"] += len(retried)
            self.say(f"{cell.name}: retried trial(s) " + ", ".join(
                f"{t['retry_of']} as {t['number']}" for t in retried))  # fmt: skip
        self._write_local(cell, body)
        self.say("finished " + (line(cell, record) if line else cell.name))

    def _settle(self, cell: SweepCell) -> None:
        """A cell taken over: fail its stale running trials (Optuna queues their retries), and
        wait up to the grace period for any whose heartbeat is not stale yet."""
        import optuna
        from optuna.trial import TrialState

        try:
            study = optuna.load_study(study_name=cell.study_name, storage=self.ctx.storage)
        except KeyError:
            return  # the stale worker stopped before creating it
        deadline = time.monotonic() + self.lease_timeout + 2 * self.interval
        while True:
            optuna.storages.fail_stale_trials(study)
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not running or time.monotonic() > deadline:
                break
            time.sleep(self.interval)
        failed = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                  if "summary" not in t.user_attrs]  # fmt: skip
        if failed:
            self.say(f"{cell.name}: trial(s) {failed} of the stale worker failed (heartbeat "
                     "stale); queued again with their parameters")  # fmt: skip

    def _write_local(self, cell: SweepCell, body: str) -> None:
        """The record into this worker's results folder too; one already there is kept (the
        database has this one; ``tunebench pull`` says where they differ)."""
        path = cell.record_path(self.ctx.results)
        if path.exists() and path.read_text(encoding="utf-8") != body:
            self.say(f"kept the different record already at {path}; the database has this run's")
            return
        atomic_write_bytes(path, body.encode("utf-8"))


def pull(cells_db: dbmod.Cells, results: Path, force: bool = False) -> tuple[int, int]:
    """Write every record of the database under ``results`` (the same path and bytes as a local
    run's). Returns (written, already identical). A different file already at a record's path
    is an error unless ``force``."""
    written = same = 0
    for rel, body in cells_db.records():
        path = results / rel
        if not path.resolve().is_relative_to(results.resolve()):
            raise TunebenchError(f"record path {rel!r} in the database leaves {results}; refused")
        if path.exists():
            if path.read_text(encoding="utf-8") == body:
                same += 1
                continue
            if not force:
                raise TunebenchError(
                    f"{path} exists and differs from the database's record; move it away or "
                    "pass --force to replace it"
                )
        atomic_write_bytes(path, body.encode("utf-8"))
        written += 1
    return written, same
