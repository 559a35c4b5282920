"""Verify a data root in LM-BFF's ``data/original/`` layout, file by file and split by split.

Two references ship with the package (``tasks/data/``, see its README):

- ``original.sha256``: the sha256 of every file of the reference copy of ``original/`` (the
  one the test suite runs on, rebuilt from public sources; its README says how each file was
  made). A file with no line there is "not checkable".
- ``lmbff-k-shot-16.md5``: LM-BFF's published ``data/k-shot/checksum``, the md5 of each of
  its K=16 split files (5 seeds x 15 tasks, 230 lines). The K=16 splits of every task found
  are drawn again (``tasks.splits``, LM-BFF's protocol) and compared; the lines of a task
  that is not there whole are "not checkable".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.errors import TunebenchError
from tasks import TASKS
from tasks.readers import data_status
from tasks.splits import LMBFF_SEEDS, sample_split

REFERENCE_DIR = Path(__file__).with_name("data")
SHA256_FILE = REFERENCE_DIR / "original.sha256"
KSHOT_FILE = REFERENCE_DIR / "lmbff-k-shot-16.md5"


def _lines(path) -> list[str]:
    """A checksum file's entries (``#`` lines say where it comes from)."""
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def known_sha256() -> dict[str, str]:
    """``<task>/<file>`` (relative to the data root) -> sha256."""
    out = {}
    for line in _lines(SHA256_FILE):
        digest, name = line.split(maxsplit=1)
        out[name.removeprefix("original/")] = digest
    return out


def lmbff_kshot_md5() -> dict[str, str]:
    """``<task>/16-<seed>/<file>`` -> md5, LM-BFF's published checksums."""
    out = {}
    for line in _lines(KSHOT_FILE):
        digest, name = line.split()
        out[name] = digest
    return out


@dataclass
class TaskCheck:
    task: str
    files: int = 0  # files found under <root>/<task>/
    sha_ok: list[str] = field(default_factory=list)
    sha_bad: list[str] = field(default_factory=list)  # differ, or known but absent
    sha_unknown: list[str] = field(default_factory=list)
    k16_ok: list[str] = field(default_factory=list)
    k16_bad: list[str] = field(default_factory=list)
    k16_na: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Verification:
    root: Path
    tasks: list[TaskCheck]

    def total(self, attr: str) -> int:
        return sum(len(getattr(t, attr)) for t in self.tasks)

    @property
    def ok(self) -> bool:
        return not self.total("sha_bad") and not self.total("k16_bad")

    def rows(self) -> list[dict]:
        return [
            {
                "task": t.task,
                "files": t.files,
                "sha256 ok/bad/unknown": f"{len(t.sha_ok)}/{len(t.sha_bad)}/{len(t.sha_unknown)}",
                "K=16 md5 ok/bad/not checkable": f"{len(t.k16_ok)}/{len(t.k16_bad)}/{len(t.k16_na)}",
                "note": t.note,
            }
            for t in self.tasks
        ]

    def summary(self) -> str:
        return (
            f"sha256: {self.total('sha_ok')} verified, {self.total('sha_bad')} mismatched, "
            f"{self.total('sha_unknown')} not checkable; LM-BFF K=16 checksums: "
            f"{self.total('k16_ok')} verified, {self.total('k16_bad')} mismatched, "
            f"{self.total('k16_na')} not checkable"
        )


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(root: Path, on_task: Callable[[str], None] | None = None) -> Verification:
    """Check every file under ``root`` that has a known sha256, then draw the K=16 splits of
    every built-in task found whole and compare them with LM-BFF's checksums."""
    root = Path(root)
    if not root.is_dir():
        raise TunebenchError(
            f"data root {root} does not exist; fetch it with `tunebench data fetch --dest {root}`"
        )
    sha, md5 = known_sha256(), lmbff_kshot_md5()
    names = [n for n in TASKS if TASKS[n].data_dir is None and TASKS[n].hub is None]
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    in_checksums = {key.split("/")[0] for key in md5} | {key.split("/")[0] for key in sha}
    order = [n for n in names if n in found or n in in_checksums]
    order += [n for n in found if n not in order]
    checks = []
    for name in order:
        if on_task:
            on_task(name)
        check = TaskCheck(name)
        _check_files(root, name, sha, check)
        _check_kshot(root, name, md5, check)
        checks.append(check)
    return Verification(root, checks)


def _check_files(root: Path, name: str, sha: dict[str, str], check: TaskCheck) -> None:
    folder = root / name
    present = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    check.files = len(present)
    for path in present:
        rel = path.relative_to(root).as_posix()
        if rel not in sha:
            check.sha_unknown.append(rel)
        elif sha256_of(path) == sha[rel]:
            check.sha_ok.append(rel)
        else:
            check.sha_bad.append(rel)
    if present:  # a known file missing from a task that is there is a mismatch too
        have = {p.relative_to(root).as_posix() for p in present}
        absent = [rel for rel in sha if rel.split("/")[0] == name and rel not in have]
        check.sha_bad += [f"{rel} (absent)" for rel in absent]
    elif not folder.is_dir():
        check.note = "not found"


def _check_kshot(root: Path, name: str, md5: dict[str, str], check: TaskCheck) -> None:
    lines = {key: digest for key, digest in md5.items() if key.split("/")[0] == name}
    if not lines:
        check.note = check.note or "LM-BFF publishes no K=16 checksums for it"
        return
    task = TASKS.get(name)
    status = data_status(task, root) if task else "unknown task"
    if status != "whole":
        check.k16_na += sorted(lines)
        if folder_exists(root, name) and not check.note:
            check.note = f"K=16: task data {status}"
        return
    for seed in LMBFF_SEEDS:
        prefix = f"{name}/16-{seed}/"
        try:
            split = sample_split(task, 16, seed, root)
        except TunebenchError as e:
            check.k16_bad += [k for k in lines if k.startswith(prefix)]
            check.note = f"K=16 seed {seed}: {e}"
            continue
        drawn = split.md5s()
        for key in sorted(k for k in lines if k.startswith(prefix)):
            got = drawn.get(key.removeprefix(prefix))
            if got is None:
                check.k16_na.append(key)
            elif got == lines[key]:
                check.k16_ok.append(key)
            else:
                check.k16_bad.append(key)


def folder_exists(root: Path, name: str) -> bool:
    return (root / name).is_dir()
