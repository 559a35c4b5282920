"""Paths made from names (backbone, task, method label, profile) stay inside their folder.

``component(name)`` turns a name into one safe path component: a hub id ``org/name`` becomes
``org--name``, a local model ``path:/models/x`` becomes ``path-x-<8 hex of the full path>``,
and any character outside ``[A-Za-z0-9._+=-]`` becomes ``_``; ``.``/``..``/empty are refused.
``inside(root, path)`` refuses a path that resolves outside ``root``.

Backbone names: a catalog name, ``path:DIR`` (a local folder with a transformers model: the
kind is read from its config) or a hub id ``org/name``; anything else with a ``/`` (an
absolute or relative folder) is refused with the ``path:`` spelling to use.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from bench.core.errors import TunebenchError, unknown

PATH_PREFIX = "path:"
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@-]")  # "@": budget labels (lora@200steps)


class PathError(TunebenchError):
    """A name that cannot become a path, or a path that leaves its folder."""


def is_hub_id(name: str) -> bool:
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name


def check_backbone_name(name: str, catalog) -> str:
    """``name`` if it names a backbone (see the module doc); else a one-line error."""
    if name in catalog:
        return name
    if name.startswith(PATH_PREFIX):
        folder = Path(name[len(PATH_PREFIX) :]).expanduser()
        if not (folder / "config.json").is_file():
            raise PathError(
                f"backbone {name!r}: {folder} is not a model folder (no config.json); give "
                "path:DIR with a folder saved by transformers' save_pretrained"
            )
        return name
    if "/" in name or "\\" in name:
        if is_hub_id(name):
            return name
        raise PathError(
            f"backbone {name!r} is neither a catalog name nor a hub id (org/name); for a local "
            f"model folder write path:{name}"
        )
    err = unknown("backbone", name, catalog)
    err.args = (err.args[0] + " (or a hub id such as org/name, or path:DIR for a local folder)",)
    raise err


def component(name: str) -> str:
    """One safe path component for ``name`` (see the module doc)."""
    if name.startswith(PATH_PREFIX):
        full = name[len(PATH_PREFIX) :]
        digest = hashlib.sha256(full.encode()).hexdigest()[:8]
        base = Path(full.rstrip("/")).name or "root"
        return f"path-{_UNSAFE.sub('_', base)}-{digest}"
    safe = _UNSAFE.sub("_", name.replace("/", "--"))
    if safe in ("", ".", "..") or safe.startswith("."):
        raise PathError(f"name {name!r} cannot be a file or folder name; rename it")
    return safe


def inside(root: Path, path: Path) -> Path:
    """``path``, after checking that it resolves inside ``root``."""
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if root_r != path_r and root_r not in path_r.parents:
        raise PathError(f"{path} would be written outside {root}; check the names that make it")
    return path
