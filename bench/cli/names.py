"""Argument checks that run before the heavy imports (torch, transformers: 5-10 s), so a
mistyped name or a bad number is answered in well under a second.

The method and backbone names are read from the sources themselves (``Method(name=...)`` in
``methods/*.py``, ``BackboneSpec("name", ...)`` in the catalog) without importing them; a test
checks that this gives exactly the registry's and the catalog's names.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from bench.core import validate
from bench.core.errors import TunebenchError, unknown


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # a top-level package: located, not run
    return Path(next(iter(spec.submodule_search_locations)))


def _calls(path: Path, func: str):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == func:
            yield node


@functools.cache
def method_names() -> tuple[str, ...]:
    names = []
    for path in sorted(_package_dir("methods").glob("*.py")):
        for call in _calls(path, "Method"):
            for kw in call.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    names.append(kw.value.value)
    return tuple(sorted(names))


@functools.cache
def backbone_names() -> tuple[str, ...]:
    path = _package_dir("bench") / "backbones" / "catalog.py"
    names = [
        call.args[0].value
        for call in _calls(path, "BackboneSpec")
        if call.args
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    ]
    return tuple(sorted(names))


def check_method(name: str) -> None:
    if name not in method_names():
        raise unknown("method", name, method_names())


def check_backbone(name: str) -> None:
    """A catalog name, ``path:DIR`` (a local model folder) or a hub id ``org/name``."""
    from bench.core.paths import check_backbone_name

    check_backbone_name(name, backbone_names())


def check_task(name: str) -> None:
    from tasks import get_task  # light: no torch

    get_task(name)


def check_cell_args(args) -> None:
    """``run`` and ``show``: names, K and seed, before anything heavy is imported."""
    check_task(args.task)
    check_method(args.method)
    check_backbone(args.backbone)
    check_k(args.k)
    check_seed(args.seed)
    check_common(args)


def check_k(k: int) -> None:
    if k < 1:
        raise TunebenchError(f"--k {k}: K (examples per label) must be an integer >= 1")


def check_seed(seed: int) -> None:
    if not 0 <= seed <= validate.SEED_MAX:
        raise TunebenchError(
            f"--seed {seed}: a seed must be an integer in [0, {validate.SEED_MAX}]"
        )


def check_common(args) -> None:
    """Options several commands share: --threads, --workers, --device."""
    for flag in ("threads", "workers"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise TunebenchError(f"--{flag} {value}: expected an integer >= 1")
    device = getattr(args, "device", None)
    if device is not None:
        check_device(device)


_GPU_NODES = ("/proc/driver/nvidia", "/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd")


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` that exists here (torch is imported only for cuda)."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise TunebenchError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if kind == "cuda":
        if not any(Path(p).exists() for p in _GPU_NODES):  # no driver: no need to ask torch
            raise TunebenchError(f"--device {device}: no CUDA device here; use --device cpu")
        import torch

        n = torch.cuda.device_count()
        if n == 0:
            raise TunebenchError(f"--device {device}: no CUDA device here; use --device cpu")
        if index and int(index) >= n:
            raise TunebenchError(
                f"--device {device}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})"
            )
