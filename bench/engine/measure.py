"""Measurement, defined once: trainable parameters, peak memory of a step, environment."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def unique_parameters(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    """Each tensor once: tied weights (the LM head and the input embeddings) count once."""
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def count(params: Iterable[nn.Parameter], trainable_only: bool = True) -> int:
    return sum(
        p.numel() for p in unique_parameters(params) if p.requires_grad or not trainable_only
    )


def parameter_report(model, backbone_total: int) -> dict:
    """Trainable parameters of a TaskModel, split into the head's and the method's own (the
    rest: adapters, prompts, biases, or the whole body), and as a % of the backbone."""
    head_ids = {id(p) for p in model.head.parameters()}
    body_ids = {id(p) for p in model.trunk_parameters()}
    head = count(p for p in model.head.parameters() if id(p) not in body_ids)
    trainable = count(model.parameters())
    method = trainable - head
    return {
        "trainable": trainable,
        "method": method,
        "head": head,
        "backbone_total": backbone_total,
        "trainable_pct_of_backbone": round(100.0 * trainable / backbone_total, 6),
        "head_shares_backbone_weights": bool(head_ids & body_ids),
    }


def peak_memory(step: Callable[[], None], modules: list, optimizer, device: torch.device) -> dict:
    """Peak memory of one training step (call after a warm-up step so optimizer state exists).

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. CPU: the bytes
    of what lives across steps (parameters, buffers, optimizer state, each storage once) plus
    the peak of the tensors the step allocates (activations, gradients, temporaries), tracked
    op by op with a ``TorchDispatchMode``. (torch's MemTracker would do this, but it cannot
    hook a module that has frozen parameters.)
    """
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize()
        return {
            "peak_bytes": int(torch.cuda.max_memory_allocated(device)),
            "how": "torch.cuda.max_memory_allocated over one step after reset_peak_memory_stats",
        }
    static = _static_storages(modules, optimizer)
    tracker = _LiveBytes(set(static))
    with tracker:
        step()
    return {
        "peak_bytes": sum(static.values()) + tracker.peak,
        "static_bytes": sum(static.values()),
        "how": "CPU: parameters + buffers + optimizer state, plus the peak of tensors allocated "
        "during one step (TorchDispatchMode live-storage tracking)",
    }


def _static_storages(modules: list, optimizer) -> dict[int, int]:
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    tensors += [p.grad for m in modules for p in m.parameters() if p.grad is not None]
    if optimizer is not None:
        tensors += [v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v)]
    out = {}
    for t in tensors:
        if t.device.type != "meta":
            st = t.untyped_storage()
            out[st.data_ptr()] = st.nbytes()
    return out


class _LiveBytes(TorchDispatchMode):
    """Tracks bytes of storages created under it, and their peak; each freed when collected."""

    def __init__(self, known: set[int]):
        super().__init__()
        self.known, self.live, self.current, self.peak = known, {}, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                key = st.data_ptr()
                if key in self.known or key in self.live or st.nbytes() == 0:
                    continue
                self.live[key] = st.nbytes()
                self.current += st.nbytes()
                self.peak = max(self.peak, self.current)
                weakref.finalize(st, self._free, key)
        return out

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)


def package_versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in (
        "torch",
        "transformers",
        "peft",
        "optuna",
        "numpy",
        "pandas",
        "scikit-learn",
        "tokenizers",
        "tunebench",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None
            )
    except OSError:
        pass
    return info


def git_state(repo: Path | None = None) -> dict:
    """Commit of the harness and whether its working tree differs from it (results/ aside:
    sweeps and reports write there)."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
