"""A PostgreSQL database as the coordinator and the store of a sweep over many machines.

Two tables beside Optuna's (created once, under an advisory lock, so workers starting together
on an empty database do not race on ``CREATE TYPE``):

- ``tunebench_cells``: one row per cell that a worker ever claimed: the lease (``holder``, a
  random id per worker process, ``host``, ``pid``, ``heartbeat``, ``generation``, which grows
  by one at every claim) and ``done``. Claiming is one transaction on the row (``SELECT ... FOR
  UPDATE``, or an ``INSERT ... ON CONFLICT DO NOTHING`` for a new row), so two workers never both
  win. A lease whose heartbeat is older than the lease timeout is taken over (generation + 1).
  Times are the database's (``now()``), so the machines' clocks do not matter.
- ``tunebench_records``: the finished records, the exact bytes of the JSON file a local run
  writes, under the record's path relative to the results folder. A record is stored in the
  same transaction that checks the lease is still this worker's (holder and generation):
  a worker that lost its lease (stalled past the timeout, taken over) stores nothing.

Every call here and every call of the Optuna storage retries on a lost connection with
backoff (``OUTAGE_S`` in all), so a database restart makes workers wait, not fail.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bench.core.errors import TunebenchError

OUTAGE_S = 600.0  # how long a worker waits for an unreachable database before giving up
OPEN_S = 120.0  # the same when it starts (a wrong host or port should not take 10 minutes)
_SCHEMA_LOCK = 0x7475_6E65  # pg_advisory_lock key for creating the tables ("tune")

_TABLES = """
CREATE TABLE IF NOT EXISTS tunebench_cells (
    cell        text PRIMARY KEY,
    holder      text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    generation  integer NOT NULL,
    claimed     timestamptz NOT NULL,
    heartbeat   timestamptz NOT NULL,
    done        boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS tunebench_records (
    cell        text PRIMARY KEY,
    path        text NOT NULL,
    body        text NOT NULL,
    holder      text NOT NULL,
    host        text NOT NULL,
    stored      timestamptz NOT NULL DEFAULT now()
);
"""


def is_db_url(storage: str | None) -> bool:
    return bool(storage) and str(storage).startswith(
        ("postgresql://", "postgresql+", "postgres://")
    )


# --- waiting out an outage -------------------------------------------------------------------


# connection errors that waiting does not cure (psycopg reports them as OperationalError too)
_PERMANENT = ("authentication failed", "does not exist", "no pg_hba.conf entry",
              "invalid dsn", "invalid connection option", "could not translate host name")  # fmt: skip


def _transient(e: BaseException | None) -> bool:
    """A lost or refused connection (the server restarting, the network), not a bad query;
    also when wrapped (Optuna raises its StorageInternalError from SQLAlchemy's error)."""
    import sqlalchemy.exc

    if any(m in str(e) for m in _PERMANENT):
        return False
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, sqlalchemy.exc.DBAPIError) and (
            e.connection_invalidated or isinstance(e, sqlalchemy.exc.OperationalError)
        ):
            return True
        if type(e).__module__.startswith("psycopg") and type(e).__name__ == "OperationalError":
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _first_line(e: BaseException) -> str:
    """What the connection error says (under Optuna's wrapper, if any)."""
    while e.__cause__ is not None and not str(e).startswith("("):
        e = e.__cause__
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def retrying(
    fn: Callable,
    what: str | None = None,
    budget_s: float = OUTAGE_S,
    done_already: Callable[..., bool] | None = None,
):
    """``fn`` called again after a transient database error, with backoff (0.5 s doubling up to
    10 s), until ``budget_s`` has passed; then the error is raised. ``done_already(*args)``:
    asked when a repeated call fails otherwise, whether the first one took effect (its commit
    went through before the connection dropped); if so the call has succeeded."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        start, delay, repeated = time.monotonic(), 0.5, False
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                if repeated and not _transient(e) and done_already is not None:
                    if done_already(*args, **kwargs):
                        return True
                if not _transient(e) or time.monotonic() - start > budget_s:
                    raise
                first = _first_line(e)
                print(f"tunebench: database unreachable during {what or fn.__name__} ({first}); "
                      f"retrying in {delay:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(delay)
                delay, repeated = min(delay * 2, 10.0), True

    return call


def _retrying_storage_class():
    """Optuna's RDBStorage whose calls wait out outages: the public ones, and the private ones
    that Optuna's storage cache (``_CachedStorage``, which every study wraps it in) calls."""
    import optuna

    rdb = optuna.storages.RDBStorage

    class RetryingRDBStorage(rdb):
        pass

    private = ["_get_stale_trial_ids", "_get_trials", "_create_new_trial", "_get_best_trial_id",
               "_set_trial_param"]  # fmt: skip
    names = [n for n, v in vars(rdb).items() if callable(v) and not n.startswith("_")] + private
    for name in names:
        setattr(RetryingRDBStorage, name, retrying(getattr(rdb, name)))

    def state_is(self, trial_id, state, *args, **kwargs) -> bool:  # a tell that went through
        return rdb.get_trial(self, trial_id).state == state

    RetryingRDBStorage.set_trial_state_values = retrying(
        rdb.set_trial_state_values, done_already=state_is
    )
    return RetryingRDBStorage


# --- opening ---------------------------------------------------------------------------------


def _engine(url: str):
    import sqlalchemy as sa

    try:
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except ImportError as e:
        raise TunebenchError(
            f"--storage {describe(url)}: {e}; install psycopg 3: pip install 'psycopg[binary]'"
        ) from None


def describe(url: str) -> str:
    """The URL without its password."""
    scheme, _, rest = str(url).partition("://")
    if "@" in rest:
        user, _, host = rest.rpartition("@")
        rest = f"{user.split(':')[0]}{':***' if ':' in user else ''}@{host}"
    return f"{scheme}://{rest}"


def open_storage(url: str, lease_timeout: float):
    """Optuna's storage on the database (trial heartbeats every ``heartbeat_interval(lease_
    timeout)`` seconds, stale after the lease timeout, stale trials retried with their
    parameters) and the cell tables, created under one advisory lock."""
    import optuna
    import sqlalchemy as sa

    engine = _engine(url)
    # heartbeats and their retry callback are marked experimental; they are what is used here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    def create_schema():
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_LOCK})
            try:
                storage = _retrying_storage_class()(
                    url,
                    engine_kwargs={"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}},
                    heartbeat_interval=heartbeat_interval(lease_timeout),
                    grace_period=max(1, int(lease_timeout)),
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
                )
                for statement in _TABLES.split(";"):
                    if statement.strip():
                        conn.execute(sa.text(statement))
                conn.commit()
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_LOCK})
                conn.commit()
        return storage

    try:
        return retrying(create_schema, "opening the database", OPEN_S)(), engine
    except TunebenchError:
        raise
    except Exception as e:  # noqa: BLE001 - server down for good, bad URL, no such database
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TunebenchError(
            f"cannot open --storage {describe(url)}: {type(e).__name__}: {first}; check the "
            "URL (postgresql://user:password@host:port/database) and that the server is up"
        ) from None


def heartbeat_interval(lease_timeout: float) -> int:
    """Seconds between heartbeats: five per lease timeout, at least one second."""
    return max(1, int(lease_timeout / 5))


# --- leases ----------------------------------------------------------------------------------


@dataclass
class Lease:
    cell: str
    holder: str
    generation: int
    taken_from: str | None  # "host pid N" of the stale holder it was taken over from, if any


class Cells:
    """The cell and record tables, as one worker process sees them."""

    def __init__(self, engine, lease_timeout: float):
        self.engine, self.lease_timeout = engine, float(lease_timeout)
        self.holder = uuid.uuid4().hex[:12]
        self.host, self.pid = socket.gethostname(), os.getpid()

    def _run(self, what: str, fn: Callable):
        """``fn(conn)`` in one transaction, again from the start after a transient error."""

        def once():
            with self.engine.begin() as conn:
                return fn(conn)

        return retrying(once, what)()

    def claim(self, cell: str) -> Lease | str:
        """The lease of ``cell`` if this worker wins it; else why not: "done" or "held"."""
        import sqlalchemy as sa

        def txn(conn):
            row = conn.execute(
                sa.text("SELECT holder, host, pid, generation, done, "
                        "now() - heartbeat > make_interval(secs => :t) AS stale "
                        "FROM tunebench_cells WHERE cell = :c FOR UPDATE"),
                {"c": cell, "t": self.lease_timeout},
            ).mappings().first()  # fmt: skip
            if row is None:
                inserted = conn.execute(
                    sa.text("INSERT INTO tunebench_cells (cell, holder, host, pid, generation, "
                            "claimed, heartbeat) VALUES (:c, :h, :host, :pid, 1, now(), now()) "
                            "ON CONFLICT (cell) DO NOTHING"),
                    {"c": cell, "h": self.holder, "host": self.host, "pid": self.pid},
                )  # fmt: skip
                return Lease(cell, self.holder, 1, None) if inserted.rowcount == 1 else "held"
            if row["done"]:
                return "done"
            if not row["stale"]:
                return "held"
            generation = row["generation"] + 1
            conn.execute(
                sa.text("UPDATE tunebench_cells SET holder = :h, host = :host, pid = :pid, "
                        "generation = :g, claimed = now(), heartbeat = now() WHERE cell = :c"),
                {"c": cell, "h": self.holder, "host": self.host, "pid": self.pid, "g": generation},
            )  # fmt: skip
            return Lease(cell, self.holder, generation, f"{row['host']} pid {row['pid']}")

        return self._run(f"claiming {cell}", txn)

    def heartbeat(self, lease: Lease) -> bool:
        """Renew the lease; False if another worker has taken it over. One try: a heartbeat
        that cannot reach the database raises, and the caller tries again at the next beat."""
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            n = conn.execute(
                sa.text("UPDATE tunebench_cells SET heartbeat = now() WHERE cell = :c AND "
                        "holder = :h AND generation = :g AND NOT done"),
                {"c": lease.cell, "h": lease.holder, "g": lease.generation},
            ).rowcount  # fmt: skip
        return n == 1

    def still_mine(self, lease: Lease) -> bool:
        import sqlalchemy as sa

        def txn(conn):
            row = conn.execute(
                sa.text("SELECT holder, generation, done FROM tunebench_cells WHERE cell = :c"),
                {"c": lease.cell},
            ).first()
            return row is not None and tuple(row) == (lease.holder, lease.generation, False)

        return self._run(f"checking the lease of {lease.cell}", txn)

    def finish(self, lease: Lease, path: str, body: str) -> bool:
        """Store the record and mark the cell done, if the lease is still this worker's (one
        transaction); False (nothing stored) if it was taken over."""
        import sqlalchemy as sa

        def txn(conn):
            row = conn.execute(
                sa.text("SELECT holder, generation, done FROM tunebench_cells "
                        "WHERE cell = :c FOR UPDATE"),
                {"c": lease.cell},
            ).first()  # fmt: skip
            if row is None or tuple(row) != (lease.holder, lease.generation, False):
                return False
            conn.execute(
                sa.text("INSERT INTO tunebench_records (cell, path, body, holder, host) "
                        "VALUES (:c, :p, :b, :h, :host)"),
                {"c": lease.cell, "p": path, "b": body, "h": self.holder, "host": self.host},
            )  # fmt: skip
            conn.execute(
                sa.text("UPDATE tunebench_cells SET done = true WHERE cell = :c"),
                {"c": lease.cell},
            )
            return True

        return self._run(f"storing the record of {lease.cell}", txn)

    def forget_failed(self, cells: list[str]) -> list[str]:
        """Delete the failed records of ``cells`` and their cells' rows (one transaction), so
        that they are claimed afresh. Returns those cells."""
        import sqlalchemy as sa

        def txn(conn):
            gone = conn.execute(
                sa.text("DELETE FROM tunebench_records WHERE cell = ANY(:cells) AND "
                        "(body::jsonb ->> 'status') IS DISTINCT FROM 'ok' RETURNING cell"),
                {"cells": list(cells)},
            ).scalars().all()  # fmt: skip
            conn.execute(
                sa.text("DELETE FROM tunebench_cells WHERE cell = ANY(:cells)"), {"cells": gone}
            )
            return sorted(gone)

        return self._run("forgetting failed records", txn)

    def states(self, cells: list[str]) -> dict[str, str]:
        """cell -> "done" | "running" (live lease) | "stale" (lease past the timeout); cells
        never claimed are absent."""
        import sqlalchemy as sa

        def txn(conn):
            rows = conn.execute(
                sa.text("SELECT cell, done, now() - heartbeat > make_interval(secs => :t) "
                        "FROM tunebench_cells WHERE cell = ANY(:cells)"),
                {"cells": list(cells), "t": self.lease_timeout},
            ).all()  # fmt: skip
            return {c: "done" if d else "stale" if s else "running" for c, d, s in rows}

        return self._run("reading the cells' states", txn)

    def records(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(path relative to the results folder, the record's text) of every stored record
        whose cell starts with ``prefix``, in path order."""
        import sqlalchemy as sa

        def txn(conn):
            return conn.execute(
                sa.text("SELECT path, body FROM tunebench_records WHERE starts_with(cell, :p) "
                        "ORDER BY path"),
                {"p": prefix},
            ).all()  # fmt: skip

        yield from (tuple(r) for r in self._run("reading the records", txn))


class Heartbeat:
    """A thread that renews a lease (and the running Optuna trial's heartbeat) every
    ``interval`` seconds while a cell runs. ``lost`` is set once another worker has taken the
    lease over; the cell's code checks it (``check``) and gives up."""

    def __init__(self, cells: Cells, lease: Lease, storage, interval: float):
        self.cells, self.lease, self.storage, self.interval = cells, lease, storage, interval
        self.lost = threading.Event()
        self.trial_id: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="tunebench-lease", daemon=True)
        import optuna

        self._record_trial_heartbeat = optuna.storages.RDBStorage.record_heartbeat

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.cells.heartbeat(self.lease):
                    self.lost.set()
                    return
                trial = self.trial_id
                if trial is not None:
                    # the plain (not retrying) call: a missed beat is retried at the next one
                    self._record_trial_heartbeat(self.storage, trial)
            except Exception as e:  # noqa: BLE001 - database away for a moment: next beat
                if not _transient(e):
                    print(f"tunebench: lease heartbeat of {self.lease.cell}: "
                          f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)  # fmt: skip

    def start_trial(self, trial_id: int) -> None:
        """A trial starts: its first heartbeat now (a trial with none is never found stale)."""
        self.storage.record_heartbeat(trial_id)
        self.trial_id = trial_id

    def end_trial(self) -> None:
        self.trial_id = None

    def check(self) -> None:
        """Raise LeaseLost if another worker has taken the cell over."""
        if self.lost.is_set():
            raise LeaseLost(self.lease.cell)


class LeaseLost(BaseException):  # noqa: N818 - not an Exception: no trial or cell catches it
    """This worker's lease of a cell was taken over by another worker; its work is dropped."""
