"""Hand-made run records (schema ``tunebench.run/1``) with known scores, for the report tests."""

from __future__ import annotations

import json
from pathlib import Path

FAMILY = {
    "finetune": "full",
    "prompt-finetune": "full",
    "bitfit": "partial",
    "lora": "partial",
    "zero-shot": "prompt",
}
PRIMARY = {"SST-2": "acc", "MRPC": "f1", "CoLA": "mcc", "RTE": "acc", "MNLI": "acc"}
TRAINABLE = {"finetune": 1000, "prompt-finetune": 1000, "bitfit": 30, "lora": 50, "zero-shot": 0}


def record(
    method: str,
    task: str,
    seed: int,
    score: float | dict | None = None,
    *,
    backbone: str = "tiny-roberta",
    k: int = 16,
    profile: str | None = "test",
    partial: bool = False,
    error: str | None = None,
    trials: list | None = None,
    dev: float = 0.75,
) -> dict:
    """An ok record with ``score`` on its test set(s) (a dict: {test set: score}), or a failed
    one when ``error`` is given."""
    metric = PRIMARY[task]
    tests = score if isinstance(score, dict) else {"test": score}
    rec = {
        "schema": "tunebench.run/1",
        "created": f"2026-01-01T00:00:{seed % 60:02d}+00:00",  # differs per record: not in outputs
        "status": "failed" if error else "ok",
        "error": error,
        "cell": {
            "backbone": backbone,
            "task": task,
            "method": method,
            "method_label": method,
            "family": FAMILY[method],
            "k": k,
            "seed": seed,
            "partial": partial,
        },
        "config": {},
        "dev": None if error else {metric: dev, "best_step": 10},
        "test": None if error else {name: {metric: s} for name, s in tests.items()},
        "primary_metric": metric,
        "test_score": None if error else next(iter(tests.values())),
        "history": [],
        "params": {
            "trainable": TRAINABLE[method],
            "backbone_total": 1000,
            "trainable_pct_of_backbone": TRAINABLE[method] / 10,
        },
        "memory": {"peak_bytes": 2**20 * (1 + seed % 3), "how": "test", "device": "cpu"},
        "time": {"train_s": 1.0 + seed % 5},
        "trials": trials if trials is not None else [],
        "env": {"git": {"commit": f"c{seed}"}},
    }
    if profile is not None:
        rec["profile"] = profile
    return rec


def write(root: Path, rec: dict) -> Path:
    c = rec["cell"]
    task = c["task"] + ("-partial" if c["partial"] else "")
    profile = rec.get("profile", "runs")
    path = (
        root
        / profile
        / c["backbone"]
        / task
        / c["method_label"]
        / f"k{c['k']}-seed{c['seed']}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1))
    return path


def write_all(root: Path, records: list[dict]) -> Path:
    for rec in records:
        write(root, rec)
    return root


def standard_set() -> list[dict]:
    """A small sweep with every case the protocol names: complete cells, a failed seed, a
    missing seed, a wholly failed cell, a method without a task, a tie, partial data, MNLI's
    two test sets."""
    seeds = (13, 21, 42)
    recs = []
    for i, s in enumerate(seeds):
        recs.append(record("finetune", "SST-2", s, 0.80 + 0.05 * i))  # 0.80 0.85 0.90
        recs.append(record("prompt-finetune", "SST-2", s, 0.90))
        recs.append(record("finetune", "RTE", s, 0.60))
        recs.append(record("prompt-finetune", "RTE", s, 0.70))
        recs.append(record("lora", "RTE", s, 0.70))  # ties with prompt-finetune on RTE
        recs.append(record("zero-shot", "SST-2", s, 0.70))
        recs.append(record("zero-shot", "RTE", s, 0.50))
        recs.append(
            record(
                "finetune", "MNLI", s, {"test_matched": 0.5, "test_mismatched": 0.4}, partial=True
            )
        )
    recs.append(record("lora", "SST-2", 13, 0.95))
    recs.append(record("lora", "SST-2", 21, error="CUDA out of memory"))  # 42: missing
    recs += [record("bitfit", "SST-2", s, error="bitfit needs biases") for s in seeds]
    return recs
