"""Benchmarks of the harness against reference implementations (not tests: they time things).

- ``python -m bench.benchmarks.step_time``: the harness's training step against a minimal
  hand-written PyTorch loop, and ``lora`` / ``finetune`` against PEFT + the HF ``Trainer``.
- ``python -m bench.benchmarks.answer_scoring``: the LM head read at the answer position for
  the label words only, against full-vocabulary logits at every position.
- ``python -m bench.benchmarks.memory [--device cuda]``: the predicted peak memory of a
  training step (``bench.run.memory``) against the measured one, per method (not timed).
- ``python -m bench.benchmarks.precision``: fp32 against the ``auto`` precision (test pass,
  training step, accuracy on the same sentences).
- ``python -m bench.benchmarks.utilization``: this machine's GEMM peak, and a results folder's
  achieved FLOP/s as a share of it (per method and overall).

The timing ones interleave their contenders round by round after a warm-up round and report
medians, so load from other processes on a shared machine falls on every contender alike.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from tasks import Example, get_task
from tasks.readers import data_root
from tasks.splits import sample_split


def sst2_rows(n: int, part: str = "train", data_dir: str | None = None) -> list[Example]:
    """The first ``n`` rows of SST-2's K=16, seed 13 split (``train``) or of its test set."""
    split = sample_split(get_task("SST-2"), 16, 13, Path(data_root(data_dir)))
    rows = split.train if part == "train" else split.test["test"]
    if n > len(rows):
        raise ValueError(f"SST-2 {part} has {len(rows)} rows, asked for {n}")
    return rows[:n]


def median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def spread_ms(samples: list[float]) -> str:
    """The interquartile range, in ms, to show how noisy a median is."""
    if len(samples) < 4:
        return "-"
    q = statistics.quantiles(samples, n=4)
    return f"{1000 * q[0]:.0f}-{1000 * q[2]:.0f}"


def machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at {time.strftime('%H:%M:%S')}"
    )


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())
