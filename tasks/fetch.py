"""Fetch LM-BFF's ``datasets.tar`` and unpack its ``original/`` folder safely.

``download`` is resumable and atomic: bytes go to ``<file>.part`` (a re-run asks the server for
the rest with an HTTP Range request), and only a complete download is renamed to its final
name, so a partial one never looks finished. ``extract_original`` checks every member before
writing anything (no absolute paths, no ``..``, no links leading out, no devices, size limits),
unpacks into a staging folder beside the destination, and moves files in only when none would
overwrite a different file.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from bench.core.errors import DataError
from tasks.readers import DATA_ENV

# What LM-BFF's data/download_dataset.sh fetches (princeton-nlp/LM-BFF).
LMBFF_URL = "https://nlp.cs.princeton.edu/projects/lm-bff/datasets.tar"
CHUNK = 1 << 20
MAX_TOTAL_BYTES = 8 << 30  # the whole of original/ unpacked
MAX_FILE_BYTES = 2 << 30
MAX_MEMBERS = 100_000


def default_dest() -> Path:
    """The data root the CLI reads when given no --data-dir: $TUNEBENCH_DATA, else ./data/original."""
    return Path(os.environ.get(DATA_ENV) or "data/original").expanduser()


def no_network(url: str, why: str) -> DataError:
    return DataError(
        f"cannot download {url} ({why}); with no network, download datasets.tar elsewhere and "
        f"pass --url http://.../datasets.tar or --url file:///path/datasets.tar, or set "
        f"${DATA_ENV} to a folder in LM-BFF's data/original/ layout"
    )


def download(url: str, target: Path, *, progress: bool = True, timeout: float = 30) -> Path:
    """Download ``url`` to ``target`` (resuming ``target.part`` if a previous run left one)."""
    if target.is_file():
        return target  # only a complete download ever gets this name
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "tunebench-data-fetch"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as e:
        if e.code == 416 and start and _range_total(e.headers.get("Content-Range")) == start:
            os.replace(part, target)  # the previous run got every byte but stopped before this
            return target
        raise DataError(
            f"download of {url} failed: HTTP {e.code} {e.reason}; check --url "
            f"(LM-BFF's is {LMBFF_URL})"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise no_network(url, getattr(e, "reason", None) or e) from None
    with response:
        status = getattr(response, "status", 200)
        if start and status == 206:
            total = _range_total(response.headers.get("Content-Range"))
            first = _range_start(response.headers.get("Content-Range"))
            if first != start:
                raise DataError(
                    f"{url}: the server resumed at byte {first}, not {start}; delete {part} "
                    "and fetch again"
                )
            mode = "ab"
        else:  # a fresh download, or a server that ignores Range: start over
            start, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        _copy(response, part, mode, start, total, url, progress)
    os.replace(part, target)
    return target


def _copy(response, part: Path, mode: str, start: int, total, url: str, progress: bool) -> None:
    from tqdm import tqdm

    done = start
    bar = tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
        desc=Path(urlparse(url).path).name or "download", disable=not progress,
    )  # fmt: skip
    try:
        with open(part, mode) as f, bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, ValueError, EOFError) as e:  # IncompleteRead, reset, timeout
                    f.flush()
                    raise _interrupted(url, part, done, total, e) from None
                if not block:
                    break
                f.write(block)
                done += len(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    except KeyboardInterrupt:
        raise _interrupted(url, part, done, total, "interrupted") from None
    if total is not None and done != total:
        raise _interrupted(url, part, done, total, "the connection closed early")


def _interrupted(url, part, done, total, why) -> DataError:
    of = f" of {total:,}" if total else ""
    return DataError(
        f"download of {url} stopped at byte {done:,}{of} ({why}); {part} keeps what arrived: "
        "run the same command again to resume"
    )


def _range_total(value: str | None) -> int | None:
    m = re.fullmatch(r"bytes (?:\d+-\d+|\*)/(\d+)", (value or "").strip())
    return int(m.group(1)) if m else None


def _range_start(value: str | None) -> int | None:
    m = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", (value or "").strip())
    return int(m.group(1)) if m else None


@dataclass
class Extracted:
    dest: Path
    added: int  # files moved in
    same: int  # files already there with the same bytes
    skipped: int  # archive members outside original/


def _member_path(m: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    name = m.name
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        raise DataError(
            f"{archive}: member {name!r} has an absolute path; refusing to unpack this archive"
        )
    path = PurePosixPath(name.removeprefix("./"))
    if ".." in path.parts:
        raise DataError(
            f"{archive}: member {name!r} leads out of the folder ('..'); refusing to unpack "
            "this archive"
        )
    return path


def _check_members(tar: tarfile.TarFile, archive: Path, limits) -> list:
    """Every member checked before anything is written; returns (member, path under original/)."""
    max_total, max_file, max_members = limits
    members, total = tar.getmembers(), 0
    if len(members) > max_members:
        raise DataError(f"{archive}: {len(members):,} members, more than {max_members:,}; refusing")
    out = []
    for m in members:
        path = _member_path(m, archive)
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise DataError(f"{archive}: member {m.name!r} is a device or FIFO; refusing")
        if m.issym() or m.islnk():
            base = path.parent if m.issym() else PurePosixPath()
            target = _normal(base / m.linkname)
            if m.linkname.startswith("/") or target is None or target.parts[:1] != ("original",):
                raise DataError(
                    f"{archive}: member {m.name!r} links to {m.linkname!r}, outside original/; "
                    "refusing to unpack this archive"
                )
        if m.size > max_file:
            raise DataError(f"{archive}: member {m.name!r} is {m.size:,} bytes, over {max_file:,}")
        total += m.size
        if total > max_total:
            raise DataError(f"{archive}: more than {max_total:,} bytes unpacked; refusing")
        if path.parts[:1] == ("original",) and len(path.parts) > 1:
            out.append((m, PurePosixPath(*path.parts[1:])))
    return out


def _normal(path: PurePosixPath) -> PurePosixPath | None:
    parts: list[str] = []
    for p in path.parts:
        if p == "..":
            if not parts:
                return None
            parts.pop()
        elif p not in (".", ""):
            parts.append(p)
    return PurePosixPath(*parts) if parts else None


def extract_original(
    archive: Path,
    dest: Path,
    *,
    limits=(MAX_TOTAL_BYTES, MAX_FILE_BYTES, MAX_MEMBERS),
) -> Extracted:
    """Unpack the archive's ``original/`` folder into ``dest`` (``original/SST-2/train.tsv``
    becomes ``dest/SST-2/train.tsv``)."""
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise DataError(
            f"{archive} is not a readable tar archive ({e}); delete it and fetch again"
        ) from None
    with tar:
        members = _check_members(tar, archive, limits)
        outside = sum(m.name.removeprefix("./").split("/")[0] != "original" for m in tar)
        if not any(m.isfile() for m, _ in members):
            raise DataError(
                f"{archive} holds no original/ folder; expected LM-BFF's datasets.tar "
                "(original/<task>/...)"
            )
        staging = dest.parent / f".{dest.name}.unpacking"
        shutil.rmtree(staging, ignore_errors=True)  # our own leftover from an interrupted run
        try:
            _unpack(tar, members, staging)
            result = _install(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    result.skipped = outside
    return result


def _unpack(tar: tarfile.TarFile, members: list, staging: Path) -> None:
    staging.mkdir(parents=True)
    links = []
    for m, rel in members:
        out = staging / rel
        if m.isdir():
            out.mkdir(parents=True, exist_ok=True)
        elif m.isfile():
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        else:
            links.append((m, rel))
    for m, rel in links:  # a link inside original/ becomes a copy of what it points to
        base = PurePosixPath("original", *rel.parent.parts) if m.issym() else PurePosixPath()
        target = _normal(base / m.linkname)
        source = staging / PurePosixPath(*target.parts[1:])
        if source.is_file():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / rel)


def _install(staging: Path, dest: Path) -> Extracted:
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        if dest.exists():
            dest.rmdir()
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, dest)  # one rename: the folder appears whole or not at all
        return Extracted(dest, len(files), 0, 0)
    clashes, same, new = [], 0, []
    for f in files:
        rel = f.relative_to(staging)
        there = dest / rel
        if not there.exists():
            new.append(rel)
        elif there.is_file() and _same_bytes(there, f):
            same += 1
        else:
            clashes.append(rel.as_posix())
    if clashes:
        raise DataError(
            f"{dest} already holds {len(clashes)} file(s) that differ from the archive's "
            f"(e.g. {', '.join(clashes[:3])}); nothing was changed: move them away or pass "
            "another --dest"
        )
    for rel in new:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, dest / rel)
    return Extracted(dest, len(new), same, 0)


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(CHUNK), fb.read(CHUNK)
            if x != y:
                return False
            if not x:
                return True
