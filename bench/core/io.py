"""Files written so that a kill at any moment leaves either the old file or the new one.

Files get the mode the process umask gives a new file (``0666 & ~umask``), as ``open()``
would: other users of a shared results folder can read them (``mkstemp`` alone gives 0600).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

FALLBACK_ENV = "TUNEBENCH_FALLBACK_DIR"


def umask_mode() -> int:
    """The mode a new file gets under the process umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), umask_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_bytes(obj) -> bytes:
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    return text.encode("utf-8")


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def without_nonfinite(obj):
    """``obj`` with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: without_nonfinite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [without_nonfinite(v) for v in obj]
    return obj


def writable(folder: Path) -> None:
    """Raise OSError unless a file can be created in ``folder`` (made if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tunebench-probe.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)


def fallback_dirs() -> list[Path]:
    """Where a record that could not be written goes: ``$TUNEBENCH_FALLBACK_DIR``, the
    system temporary folder, the home folder."""
    dirs = [Path(tempfile.gettempdir()) / "tunebench-unsaved", Path.home() / "tunebench-unsaved"]
    if os.environ.get(FALLBACK_ENV):
        dirs.insert(0, Path(os.environ[FALLBACK_ENV]))
    return dirs


def save_fallback(obj, stem: str) -> Path | None:
    """Save ``obj`` as JSON in the first fallback folder that takes it; its path, or None."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    data = json_bytes(obj)
    for folder in fallback_dirs():
        path = folder / f"{stem}-{stamp}-{os.getpid()}.json"
        try:
            atomic_write_bytes(path, data)
        except OSError:
            continue
        return path
    return None
