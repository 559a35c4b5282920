"""How much of this machine's matrix-multiply peak a sweep used.

    python -m bench.benchmarks.utilization [RESULTS ...] [--size 2048] [--repeats 5]
        [--threads N] [--precision fp32|bf16|fp16]

1. This machine's GEMM peak for each precision the records ran in (or ``--precision``): the
   best of ``--repeats`` timed ``torch.mm`` of two ``--size`` square matrices in that dtype
   (bf16/fp16 tensors: what autocast hands the kernels), 2·n³ FLOPs each, on the device the
   records name, with the sweep's torch threads (the records' ``env.hardware.torch_threads``
   when they agree; ``--threads`` overrides).
2. For each results folder: every ok record's estimated FLOPs (``compute.cell``: every trial,
   pruned and failed ones included, searches and test passes; ``compute.total`` when a record
   has no cell figure) over its wall time (``time.total_s``), per method label and overall,
   as FLOP/s and as a fraction of the peak of the record's precision. Records made before
   FLOPs were recorded are counted and left out.

FLOPs are the harness's estimate (``bench.engine.compute``: 2·N per padded token forward,
6·N when the trunk trains; attention scores and heads not counted), so the fraction is a
lower bound on the arithmetic the machine did; wall time includes everything a cell does
(loading, rendering, Python), which is the point: it says how far a sweep is from the peak.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from bench.benchmarks import machine_line, print_table
from bench.benchmarks.precision import cpu_line

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def gemm_peak(prec: str, size: int, repeats: int, device: torch.device) -> float:
    """FLOP/s of the best of ``repeats`` (size x size) @ (size x size) products in ``prec``."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device, DTYPES[prec])
    b = torch.randn(size, size, generator=g).to(device, DTYPES[prec])
    torch.mm(a, b)  # warm-up (kernel choice, packing buffers)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def read_records(folder: Path) -> list[dict]:
    out = []
    for path in sorted(Path(folder).rglob("*.json")):
        if any(part.startswith(".") or part == "cache" for part in path.parts):
            continue
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and str(rec.get("schema", "")).startswith("tunebench.run/"):
            out.append(rec)
    return out


def flops_of(rec: dict) -> float | None:
    c = rec.get("compute") or {}
    t = c.get("cell") or c.get("total")
    return None if t is None else float(t["flops"])


def precision_of(rec: dict) -> str:
    return (rec.get("config") or {}).get("precision") or "fp32"


def summarize(records: list[dict], peaks: dict[str, float]) -> tuple[list[dict], int]:
    """Rows per (precision, method label) and overall; and how many records had no FLOPs."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    without = 0
    for rec in records:
        f, wall = flops_of(rec), (rec.get("time") or {}).get("total_s")
        if f is None or not wall:
            without += 1
            continue
        groups[(precision_of(rec), rec["cell"]["method_label"])].append((f, float(wall)))
    rows = []
    for prec in sorted({p for p, _ in groups}):
        mine = {m: v for (p, m), v in groups.items() if p == prec}
        for label, pairs in sorted(mine.items()) + [
            ("(all)", [x for v in mine.values() for x in v])
        ]:
            f, wall = sum(x for x, _ in pairs), sum(w for _, w in pairs)
            rows.append(
                {
                    "precision": prec,
                    "method": label,
                    "cells": len(pairs),
                    "TFLOP": f"{f / 1e12:.2f}",
                    "wall s": f"{wall:.0f}",
                    "GFLOP/s": f"{f / wall / 1e9:.1f}",
                    "% of peak": f"{100 * f / wall / peaks[prec]:.1f}",
                }
            )
    return rows, without


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="*", default=["results"], help="results folder(s)")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, help="torch threads (default: the records')")
    p.add_argument("--precision", choices=list(DTYPES), help="peak for this one only")
    args = p.parse_args(argv)
    folders = [Path(f) for f in args.results]
    for f in folders:
        if not f.is_dir():
            raise SystemExit(f"results folder {f} not found; pass the folder a sweep wrote")
    records = [r for f in folders for r in read_records(f) if r.get("status") == "ok"]
    threads = args.threads or _record_threads(records)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if any(_on_cuda(r) for r in records) else "cpu")
    wanted = [args.precision] if args.precision else sorted({precision_of(r) for r in records})
    print(cpu_line())
    print(machine_line())
    peaks = {}
    for prec in wanted or ["fp32"]:
        peaks[prec] = gemm_peak(prec, args.size, args.repeats, device)
        print(
            f"GEMM peak, {prec}, {args.size}x{args.size}, {torch.get_num_threads()} threads, "
            f"{device}: {peaks[prec] / 1e9:.1f} GFLOP/s (best of {args.repeats})"
        )
    records = [r for r in records if precision_of(r) in peaks]
    rows, without = summarize(records, peaks)
    print(f"\n{', '.join(map(str, folders))}: {len(records)} ok records")
    if rows:
        print_table(rows, list(rows[0]))
    if without:
        print(f"{without} record(s) without FLOPs (made before they were recorded): left out")
    return 0


def _record_threads(records: list[dict]) -> int | None:
    seen = {((r.get("env") or {}).get("hardware") or {}).get("torch_threads") for r in records}
    seen.discard(None)
    return seen.pop() if len(seen) == 1 else None


def _on_cuda(rec: dict) -> bool:
    return str((rec.get("memory") or {}).get("device", "")).startswith("cuda")


if __name__ == "__main__":
    raise SystemExit(main())
