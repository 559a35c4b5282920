"""Sweeps on PostgreSQL: cell leases, records in the database, ``pull``, and the fault test
(workers killed, stalled past their lease, the database restarted mid-run).

A real server is needed. ``.ci/run`` starts one and exports ``TUNEBENCH_PG_URL`` (a superuser
URL), ``TUNEBENCH_PG_DATA`` and ``TUNEBENCH_PG_BIN`` (to restart it); without them the fixture
starts a private cluster the same way (initdb on a free 127.0.0.1 port, as the ``postgres``
user when run as root) if PostgreSQL's binaries are installed, and the tests skip otherwise.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# --- a real PostgreSQL -----------------------------------------------------------------------


@dataclass
class Server:
    url: str  # superuser URL to the maintenance database
    data: str | None  # data directory, when this process may restart the server
    bin: str | None
    as_user: list[str]  # command prefix to run the server's tools as its owner

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, f"{self.bin}/pg_ctl", "-D", self.data, *args],
                       check=True, capture_output=True, timeout=120)  # fmt: skip

    def new_database(self) -> str:
        import sqlalchemy as sa

        name = f"tb_{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        engine.dispose()
        return self.url.rsplit("/", 1)[0] + "/" + name


def _pg_bin() -> str | None:
    if os.environ.get("TUNEBENCH_PG_BIN"):
        return os.environ["TUNEBENCH_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return str(Path(found[-1]).parent)
    initdb = shutil.which("initdb")
    return str(Path(initdb).resolve().parent) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server():
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.environ.get("TUNEBENCH_PG_URL"):
        yield Server(os.environ["TUNEBENCH_PG_URL"], os.environ.get("TUNEBENCH_PG_DATA"),
                     _pg_bin(), as_user)  # fmt: skip
        return
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL not found: install Debian's postgresql package or run .ci/run "
                    "(or set TUNEBENCH_PG_URL)")  # fmt: skip
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg (v3) not installed: pip install 'psycopg[binary]'")
    root = tempfile.mkdtemp(prefix="tunebench-pg-")
    if as_user:
        shutil.chown(root, "postgres")
    port = _free_port()
    server = Server(f"postgresql://postgres@127.0.0.1:{port}/postgres", f"{root}/data", pg_bin,
                    as_user)  # fmt: skip
    try:
        subprocess.run([*as_user, f"{pg_bin}/initdb", "-D", server.data, "-A", "trust", "-U",
                        "postgres", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=180)  # fmt: skip
        conf = (
            f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root}'\nfsync = off\n"
        )
        with open(f"{server.data}/postgresql.conf", "a") as f:
            f.write(conf)  # (not options of one start: the fault test restarts the server)
        server.pg_ctl("-l", f"{root}/log", "-w", "start")
    except (subprocess.SubprocessError, OSError) as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a private PostgreSQL with {pg_bin}: {e}")
    try:
        yield server
    finally:
        subprocess.run([*as_user, f"{pg_bin}/pg_ctl", "-D", server.data, "-m", "immediate",
                        "stop"], capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    return pg_server.new_database()


@pytest.fixture
def spawned():
    """Worker processes a test starts; any left running (a failed test) are killed."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


# --- helpers ---------------------------------------------------------------------------------

# The smoke profile's cells of tiny-roberta on RTE for four methods: 8 cells of 2 trials, a
# few seconds each on one thread.
SUBSET = ["--backbones", "tiny-roberta", "--tasks", "RTE",
          "--methods", "finetune,lora,bitfit,prompt-finetune"]  # fmt: skip
N_CELLS = 8


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def worker(url: str, results: Path, log: Path, lease: float = 6.0) -> subprocess.Popen:
    argv = cli("worker", "smoke", "--storage", url, "--results", str(results), "--threads", "1",
               "--lease-timeout", str(lease), "--poll", "1", *SUBSET)  # fmt: skip
    return subprocess.Popen(argv, cwd=REPO, env=env(), stdout=log.open("w"),
                            stderr=subprocess.STDOUT)  # fmt: skip


_ENGINES: dict = {}


def query(url: str, sql: str, **params) -> list[tuple]:
    import sqlalchemy as sa

    if url not in _ENGINES:  # one per database: the test polls every 50 ms
        _ENGINES[url] = sa.create_engine(url, pool_pre_ping=True)
    with _ENGINES[url].connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def running_trial_of(url: str, pid: int) -> str | None:
    """The cell whose lease ``pid`` holds while one of its trials runs, or None."""
    import sqlalchemy.exc

    try:
        rows = query(
            url,
            "SELECT c.cell FROM tunebench_cells c JOIN studies s ON s.study_name = c.cell "
            "JOIN trials t ON t.study_id = s.study_id JOIN trial_heartbeats h ON h.trial_id = "
            "t.trial_id WHERE c.pid = :pid AND NOT c.done AND t.state = 'RUNNING'",
            pid=pid,
        )
    except sqlalchemy.exc.ProgrammingError:  # the workers have not created the tables yet
        return None
    return rows[0][0] if rows else None


def wait_for(what: str, fn, timeout: float = 240.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def records_of(url: str) -> dict[str, dict]:
    return {cell: json.loads(body) for cell, body in query(url, "SELECT cell, body FROM "
                                                            "tunebench_records")}  # fmt: skip


# --- tests -----------------------------------------------------------------------------------


def test_a_worker_needs_a_postgresql_url(tmp_path):
    run = subprocess.run(cli("worker", "smoke", "--storage", str(tmp_path / "j.journal")),
                         cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 2
    assert "a worker needs a PostgreSQL URL" in run.stderr and "Traceback" not in run.stderr


def test_claims_are_exclusive_and_stale_leases_are_taken_over_once(pg_url):
    from bench.sweep import db

    _storage, engine = db.open_storage(pg_url, lease_timeout=2)
    a, b = db.Cells(engine, 2), db.Cells(engine, 2)
    lease = a.claim("p/cell")
    assert isinstance(lease, db.Lease) and lease.generation == 1
    assert b.claim("p/cell") == "held"  # a live lease is not taken
    assert a.heartbeat(lease)
    time.sleep(2.5)  # no heartbeat for longer than the timeout
    taken = b.claim("p/cell")
    assert isinstance(taken, db.Lease) and taken.generation == 2 and "pid" in taken.taken_from
    assert a.claim("p/cell") == "held"  # taken over once, not twice
    assert not a.heartbeat(lease)  # the stale worker learns it lost the cell ...
    assert not a.finish(lease, "p/cell.json", "{}\n")  # ... and cannot store a record
    assert b.finish(taken, "p/cell.json", '{"status": "ok"}\n')
    assert b.claim("p/cell") == a.claim("p/cell") == "done"
    assert list(a.records()) == [("p/cell.json", '{"status": "ok"}\n')]
    # --retry-failed forgets failed records only; their cells are claimed afresh
    failed = a.claim("p/bad")
    assert a.finish(failed, "p/bad.json", '{"status": "failed"}\n')
    assert a.forget_failed(["p/cell", "p/bad"]) == ["p/bad"]
    again = b.claim("p/bad")
    assert isinstance(again, db.Lease) and again.generation == 1 and again.taken_from is None
    assert [path for path, _ in a.records()] == ["p/cell.json"]


def test_workers_racing_on_an_empty_database_create_the_schema_once(pg_url):
    code = ("import sys; from bench.sweep import db; "
            "db.open_storage(sys.argv[1], 300); print('ok')")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url], cwd=REPO, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outs]


@pytest.mark.slow
def test_three_workers_survive_a_kill_a_stall_and_a_database_restart(
    pg_server, tmp_path, data_root, spawned, one_thread
):
    if pg_server.data is None or pg_server.bin is None:
        pytest.skip("the fault test restarts the server: set TUNEBENCH_PG_DATA/_BIN (.ci/run)")
    lease = 6.0
    # The same cells by one worker (in this process: no second start-up), for the scores.
    from bench.cli import main

    base_url = pg_server.new_database()
    argv = ["worker", "smoke", "--storage", base_url, "--results", str(tmp_path / "base"), *SUBSET]
    assert main(argv) == 0
    expected = records_of(base_url)
    assert len(expected) == N_CELLS

    url = pg_server.new_database()
    events, t0 = [], time.monotonic()

    def event(text):
        events.append(f"{time.monotonic() - t0:6.1f} s  {text}")

    logs = {name: tmp_path / f"{name}.log" for name in "ABC"}
    procs = {name: worker(url, tmp_path / name, logs[name], lease) for name in "ABC"}
    spawned.extend(procs.values())
    # A: killed in the middle of a trial; B: stopped in the middle of a trial, past its lease
    # (whichever is seen in a trial first); the database restarts meanwhile, during a trial
    # of C if C has one within 30 s.
    hit: dict[str, str] = {}

    def strike():
        for name, sig, what in (("A", signal.SIGKILL, "SIGKILL"), ("B", signal.SIGSTOP, "SIGSTOP")):
            if name not in hit and (cell := running_trial_of(url, procs[name].pid)):
                procs[name].send_signal(sig)
                hit[name] = cell
                event(f"{what} {name} (pid {procs[name].pid}) during a trial of {cell}")
        return len(hit) == 2

    wait_for("trials of A and B", strike)
    stalled = hit["B"]

    def generation():
        return query(url, "SELECT generation FROM tunebench_cells WHERE cell = :c", c=stalled)[0][0]

    stopped_at = generation()
    try:
        busy = wait_for("a trial of C", lambda: running_trial_of(url, procs["C"].pid), 30)
        event(f"C in a trial of {busy}")
    except AssertionError:
        event("C not in a trial for 30 s")
    pg_server.pg_ctl("-m", "fast", "stop")
    event("database stopped")
    time.sleep(4)
    pg_server.pg_ctl("-l", f"{pg_server.data}/../log", "-w", "start")
    event("database started again")
    wait_for(f"{stalled} taken over", lambda: generation() > stopped_at, lease * 10, 0.5)
    procs["B"].send_signal(signal.SIGCONT)
    event(f"SIGCONT B ({stalled} was taken over)")
    for name in "BC":
        procs[name].wait(timeout=600)
    event("B and C exited")
    procs["A"].wait(timeout=60)
    text = {name: logs[name].read_text() for name in "ABC"}
    assert procs["A"].returncode == -signal.SIGKILL
    assert procs["B"].returncode == 0 and procs["C"].returncode == 0, text["B"] + text["C"]

    # Every cell: one record in the database, with the single worker's scores.
    got = records_of(url)
    assert sorted(got) == sorted(expected)
    for name, rec in got.items():
        want = expected[name]
        assert rec["status"] == want["status"] == "ok", (name, rec.get("error"))
        assert (rec["test_score"], rec["dev"]) == (want["test_score"], want["dev"]), name
        assert len(rec["trials"]) == rec["search"]["n_trials"], name
        assert not [t for t in rec["trials"] if t["state"] == "FAIL"], name  # none for the outage
    # Each cell's study holds exactly the profile's counted trials; the stale ones failed.
    counted = dict(query(url, "SELECT s.study_name, count(*) FROM studies s JOIN trials t ON "
                          "t.study_id = s.study_id JOIN trial_user_attributes a ON a.trial_id = "
                          "t.trial_id AND a.key = 'summary' WHERE t.state IN ('COMPLETE', "
                          "'PRUNED') GROUP BY s.study_name"))  # fmt: skip
    assert counted == {name: rec["search"]["n_trials"] for name, rec in got.items()}
    retried = [t for rec in got.values() for t in rec["trials"] if "retry_of" in t]
    assert len(retried) >= 1  # A's trial at least (B's too unless it was between trials)
    # pull: one readable record per cell, the same bytes as the worker that ran it wrote.
    pulled = tmp_path / "pulled"
    run = subprocess.run(cli("pull", "--storage", url, "--results", str(pulled)), cwd=REPO,
                         env=env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    files = sorted(p for p in pulled.rglob("*.json"))
    assert len(files) == N_CELLS
    for path in files:
        rel = path.relative_to(pulled)
        local = [tmp_path / n / rel for n in "BC" if (tmp_path / n / rel).exists()]
        assert local and path.read_bytes() == local[0].read_bytes(), rel
        json.loads(path.read_text())
    # The logs say what happened.
    said = Counter()
    for line in (text["A"] + text["B"] + text["C"]).splitlines():
        for key in ("took over", "lost the lease", "retried trial", "database unreachable",
                    "finished", "failed (heartbeat stale)"):  # fmt: skip
            said[key] += key in line
    assert said["took over"] >= 2 and said["lost the lease"] == 1
    assert said["finished"] == N_CELLS
    print(
        "\n".join(
            [
                "",
                "fault test:",
                *events,
                f"log counts (A, B, C): {dict(said)}",
                f"retried trials: {[(t['retry_of'], t['number']) for t in retried]}",
            ]
        )
    )


def test_sweep_on_a_database_then_worker_and_pull(pg_url, tmp_path, data_root, one_thread, capsys):
    from bench.cli import main

    one = ["--backbones", "tiny-roberta", "--tasks", "RTE", "--methods", "head-only",
           "--seeds", "13"]  # fmt: skip
    local = tmp_path / "here"
    assert main(["sweep", "smoke", "--storage", pg_url, "--results", str(local), *one]) == 0
    assert "claimed tiny-roberta/RTE/head-only/k4-seed13" in capsys.readouterr().out
    record = local / "smoke/tiny-roberta/RTE/head-only/k4-seed13.json"
    assert json.loads(record.read_text())["search"]["sampler_seeding"] == "per trial slot"
    # A worker started again finds nothing to do and exits 0 (what a scheduler's retry does).
    again = ["worker", "smoke", "--storage", pg_url, "--results", str(tmp_path / "w"), *one]
    assert main(again) == 0
    assert "no cell left (1 done)" in capsys.readouterr().out
    assert not (tmp_path / "w").exists()
    # pull: the same bytes at the same path; again: nothing to write; a different file: refused.
    pulled = tmp_path / "pulled"
    assert main(["pull", "--storage", pg_url, "--results", str(pulled)]) == 0
    copy = pulled / record.relative_to(local)
    assert copy.read_bytes() == record.read_bytes()
    assert main(["pull", "--storage", pg_url, "--results", str(pulled)]) == 0
    assert "0 records written" in capsys.readouterr().out.splitlines()[-1]
    copy.write_text("{}\n")
    assert main(["pull", "--storage", pg_url, "--results", str(pulled)]) == 2
    assert "differs from the database's record" in capsys.readouterr().err


def test_a_database_that_cannot_be_used_is_one_line_at_once(pg_server, capsys):
    from bench.cli import main

    url = pg_server.url.rsplit("/", 1)[0] + "/no_such_database"
    start = time.monotonic()
    assert main(["pull", "--storage", url, "--results", "unused"]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - start < 60  # not waited out as if the server were restarting
    assert err.startswith("tunebench: error: cannot open --storage postgresql://")
    assert 'database "no_such_database" does not exist' in err and "Traceback" not in err
