"""Numeric precision of a run: ``fp32``, ``bf16``, ``fp16`` (CUDA only) or ``auto``.

``auto`` is bf16 where the hardware multiplies bf16 fast (CUDA with bf16 support; a CPU whose
flags show ``amx_bf16`` or ``avx512_bf16``), fp32 otherwise. Weights stay fp32 (master
weights); ``autocast`` covers the trunk's forward (adapter and body); the heads, label-word
scores and losses run outside it, in fp32. A model carries its resolved precision
(``TaskModel.precision``); models built inside ``using(p)`` (a run's searches and its build)
start with ``p``.
"""

from __future__ import annotations

import contextlib
import functools
from contextvars import ContextVar

import torch

from bench.core.errors import TunebenchError

CHOICES = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16")

_CURRENT: ContextVar[str] = ContextVar("precision", default="fp32")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in FAST_BF16_FLAGS)
    return False


def resolve(name: str, device: torch.device | str) -> str:
    """``auto`` -> what this device runs fast; a fixed choice is checked against the device."""
    device = torch.device(device)
    if name not in CHOICES:
        raise TunebenchError(
            f"precision={name!r} is not one of {list(CHOICES)}; e.g. --set precision=auto"
        )
    if name == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise TunebenchError(
            f"precision=fp16 needs a CUDA device (this run is on {device.type}); use "
            "--set precision=bf16 or fp32"
        )
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise TunebenchError(
            "precision=bf16: this GPU has no bf16 support; use --set precision=fp16 or fp32"
        )
    return name


def autocast(precision: str, device: torch.device | str):
    """The context a trunk's forward runs in: autocast to bf16/fp16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])


def current() -> str:
    """The precision models built now start with (``using``); fp32 outside any run."""
    return _CURRENT.get()


@contextlib.contextmanager
def using(precision: str):
    token = _CURRENT.set(precision)
    try:
        yield
    finally:
        _CURRENT.reset(token)
