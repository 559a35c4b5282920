"""`tunebench data fetch` / `data verify` with no network: a loopback HTTP server (Range
supported) serves a tar built here from the real data (a few small tasks)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.cli.app import main
from tasks.fetch import download, extract_original

TASKS = ("RTE", "trec", "cr")  # small files; a GLUE .tsv task and two .csv tasks
REPO = Path(__file__).resolve().parents[1]


def build_tar(root: Path, tasks=TASKS, corrupt: str | None = None, extra=()) -> bytes:
    """``original/<task>/<file>`` for each task, plus a member outside original/;
    ``corrupt``: one file (``task/file``) gets one byte changed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for task in tasks:
            for path in sorted((root / task).iterdir()):
                data = path.read_bytes()
                if corrupt == f"{task}/{path.name}":
                    i = len(data) // 2
                    data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
                _add(tar, f"original/{task}/{path.name}", data)
        _add(tar, "k-shot/README", b"not unpacked\n")
        for member in extra:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.size else None)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class Mirror:
    """Serves ``body`` at /datasets.tar; ``cut`` > 0 makes the next full response stop after
    that many bytes (the connection drops); ``ranges`` records the Range headers seen."""

    def __init__(self, body: bytes):
        self.body, self.cut, self.ranges, self.ignore_range = body, 0, [], False
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path != "/datasets.tar":
                    self.send_error(404)
                    return
                body, rng = mirror.body, self.headers.get("Range")
                mirror.ranges.append(rng)
                rng = None if mirror.ignore_range else rng
                start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                part = body[start:]
                if mirror.cut:
                    part, mirror.cut = part[: mirror.cut], 0
                self.wfile.write(part)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/datasets.tar"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(data_root):
    m = Mirror(build_tar(data_root))
    yield m
    m.close()


def fetch(url: str, dest: Path, *more: str) -> int:
    return main(["data", "fetch", "--url", url, "--dest", str(dest), "--quiet", *more])


def test_fetch_unpacks_original_and_verifies(mirror, tmp_path, data_root, capsys):
    dest = tmp_path / "data" / "original"
    assert fetch(mirror.url, dest) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for task in TASKS:
        assert rows[task][2:4] == [f"{len(list((data_root / task).iterdir()))}/0/0", "15/0/0"]
        for f in (data_root / task).iterdir():
            assert (dest / task / f.name).read_bytes() == f.read_bytes()
    assert rows["MNLI"][3] == "0/0/20" and rows["MNLI"][4:] == ["not", "found"]
    assert "45 verified, 0 mismatched, 185 not checkable" in out
    assert not (dest / "k-shot").exists() and not (dest.parent / "k-shot").exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["original"]  # tar, .part removed
    assert main(["data", "verify", str(dest)]) == 0  # verify alone: the same table
    assert "45 verified, 0 mismatched" in capsys.readouterr().out


def test_interrupted_download_resumes_with_a_range_request(mirror, tmp_path, capsys):
    dest = tmp_path / "original"
    mirror.cut = 50_000
    assert fetch(mirror.url, dest) == 2
    err = capsys.readouterr().err
    assert "stopped at byte 50,000 of" in err and "run the same command again to resume" in err
    part = tmp_path / "datasets.tar.part"
    assert part.stat().st_size == 50_000
    assert not (tmp_path / "datasets.tar").exists() and not dest.exists()  # nothing looks done
    assert fetch(mirror.url, dest) == 0
    assert mirror.ranges == [None, "bytes=50000-"]
    assert not part.exists() and (dest / "RTE" / "train.tsv").is_file()


def test_a_server_that_ignores_range_gets_a_fresh_download(mirror, tmp_path):
    (tmp_path / "datasets.tar.part").write_bytes(b"stale bytes of another file")
    mirror.ignore_range = True
    assert (
        download(mirror.url, tmp_path / "datasets.tar", progress=False).read_bytes() == mirror.body
    )
    assert mirror.ranges == ["bytes=27-"] and not (tmp_path / "datasets.tar.part").exists()


def test_a_complete_part_file_is_finished_not_refetched(mirror, tmp_path):
    (tmp_path / "datasets.tar.part").write_bytes(mirror.body)  # killed just before the rename
    assert (
        download(mirror.url, tmp_path / "datasets.tar", progress=False).read_bytes() == mirror.body
    )
    assert mirror.ranges == [f"bytes={len(mirror.body)}-"]


def test_a_corrupted_byte_is_caught(data_root, tmp_path, capsys):
    m = Mirror(build_tar(data_root, corrupt="RTE/dev.tsv"))
    try:
        assert fetch(m.url, tmp_path / "original") == 2
    finally:
        m.close()
    captured = capsys.readouterr()
    assert "MISMATCH RTE/dev.tsv" in captured.out
    assert "MISMATCH RTE/16-13/test.tsv" in captured.out  # the split copies the test file
    row = next(line.split() for line in captured.out.splitlines() if line.startswith("RTE "))
    assert row[2:4] == ["1/1/0", "10/5/0"]  # train.tsv ok, dev.tsv bad; 5 test.tsv bad
    assert "do not match their checksums" in captured.err
    assert "archive is kept" in captured.err and (tmp_path / "datasets.tar").is_file()


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


@pytest.mark.parametrize(
    "member, message",
    [
        (_file("original/../../escaped.txt"), "leads out of the folder"),
        (_file("../escaped.txt"), "leads out of the folder"),
        (_file("/tmp/tunebench-absolute.txt"), "has an absolute path"),
        (_link("original/RTE/passwd", "/etc/passwd"), "outside original/"),
        (_link("original/RTE/up", "../../escaped.txt"), "outside original/"),
        (_link("original/RTE/hard", "etc/passwd", tarfile.LNKTYPE), "outside original/"),
    ],
)
def test_unsafe_archives_are_refused_before_anything_is_written(
    data_root, tmp_path, capsys, member, message
):
    m = Mirror(build_tar(data_root, tasks=("RTE",), extra=[member]))
    dest = tmp_path / "deep" / "original"
    try:
        assert fetch(m.url, dest) == 2
    finally:
        m.close()
    err = capsys.readouterr().err
    assert message in err and repr(member.name) in err and "refusing" in err
    assert not dest.exists() and not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/tunebench-absolute.txt").exists()


def test_size_limits_refuse_a_bomb(data_root, tmp_path):
    archive = tmp_path / "datasets.tar"
    archive.write_bytes(build_tar(data_root, tasks=("RTE",)))
    with pytest.raises(Exception, match=r"over 1,000"):
        extract_original(archive, tmp_path / "original", limits=(10**9, 1000, 100))
    with pytest.raises(Exception, match=r"more than 10,000 bytes unpacked"):
        extract_original(archive, tmp_path / "original", limits=(10_000, 10**9, 100))
    assert not (tmp_path / "original").exists()


def test_files_already_there_are_never_overwritten(mirror, tmp_path, capsys):
    dest = tmp_path / "original"
    (dest / "RTE").mkdir(parents=True)
    (dest / "RTE" / "dev.tsv").write_text("my own edits\n")
    assert fetch(mirror.url, dest) == 2
    assert "already holds 1 file(s) that differ" in capsys.readouterr().err
    assert (dest / "RTE" / "dev.tsv").read_text() == "my own edits\n"
    assert sorted(p.name for p in dest.rglob("*")) == ["RTE", "dev.tsv"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_network_fails_at_once_naming_url_and_data_env(tmp_path, capsys):
    t0 = time.perf_counter()
    assert fetch(f"http://127.0.0.1:{_closed_port()}/datasets.tar", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - t0 < 5
    assert err.count("\n") == 1 and "--url" in err and "$TUNEBENCH_DATA" in err


def test_make_reproduce_fetches_first_when_the_data_root_is_missing(mirror, tmp_path):
    """The Makefile's `data` step (run by `make reproduce` before the sweep)."""
    dest = tmp_path / "fresh" / "original"
    env = {**os.environ, "TUNEBENCH_DATA": str(dest)}
    argv = ["make", "-s", "-o", ".venv/.setup-done", "data", f"BIN={Path(sys.executable).parent}",
            f"DATA_URL={mirror.url}"]  # fmt: skip
    run = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"data root {dest} is missing: fetching it first" in run.stdout
    assert (dest / "trec" / "train.csv").is_file()
    again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "fetching" not in again.stdout  # there: nothing to do
