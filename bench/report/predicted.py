"""Predicted peak GPU memory of the paper backbones (``predicted_memory.json``), shown in the
efficiency tables beside the measured peak and marked as predicted.

The file is written by ``tunebench memory --json`` (``bench/run/memory.py``: one training
step on fake tensors from the backbone's config alone); the report only reads it.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

SCHEMA = "tunebench.predicted-memory/1"
PRECISIONS = ("fp32", "bf16")  # the columns' order


@functools.cache
def _table() -> tuple[dict, str]:
    """{(backbone, method label): {precision: estimate}} and how the figures were made."""
    doc = json.loads(resources.files("bench.report").joinpath("predicted_memory.json").read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"predicted_memory.json: schema {doc.get('schema')!r}, expected {SCHEMA}")
    out: dict = {}
    for e in doc["estimates"]:
        out.setdefault((e["backbone"], e["label"]), {})[e["precision"]] = e
    return out, doc["how"]


def lookup(backbone: str, method_label: str) -> dict | None:
    """{"fp32": bytes, "bf16": bytes, "batch_size": B, "max_length": L}, or None when the
    backbone and method have no prediction."""
    found = _table()[0].get((backbone, method_label))
    if not found:
        return None
    any_one = next(iter(found.values()))
    return {
        **{p: found[p]["peak"] if p in found else None for p in PRECISIONS},
        "batch_size": any_one["batch_size"],
        "max_length": any_one["max_length"],
    }


def note() -> str:
    """One line for a report's notes: what the predicted column is."""
    sizes = {(e["batch_size"], e["max_length"]) for v in _table()[0].values() for e in v.values()}
    shapes = ", ".join(f"batch {b} x {n} tokens" for b, n in sorted(sizes))
    return (
        f"Predicted peak (GPU): predicted, not measured; fp32 / bf16 autocast at {shapes}, "
        f"on CUDA, for the backbones in bench/report/predicted_memory.json; {_table()[1]}."
    )
