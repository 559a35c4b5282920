"""Paired significance tests and the under-trained marker, on hand-made records with known
answers (bench/report/significance.py, bench/report/training.py)."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from report_records import record, write_all

from bench.report import significance, training
from bench.report.aggregate import aggregate, load_records
from bench.report.make import build_outputs

N = 200  # test examples per record


def _with_predictions(method: str, seed: int, correct: np.ndarray) -> dict:
    """A record whose test predictions are right exactly where ``correct`` is 1."""
    labels = np.arange(N) % 2
    pred = np.where(correct.astype(bool), labels, 1 - labels)
    rec = record(method, "SST-2", seed, float(correct.mean()))
    rec["predictions"] = {
        "test": {
            "labels": "".join(map(str, labels)),
            "pred": "".join(map(str, pred)),
            "probs": " ".join(f"{1 - p:.4f},{p:.4f}" for p in pred),
        }
    }
    return rec


def _table(tmp_path, records):
    root = write_all(tmp_path, records)
    (table,) = aggregate(load_records(root)).tables
    return root, table


def test_paired_t_known_value_and_undefined_cases():
    # differences 0.1, 0.2, 0.1: t = 4 with 2 df, two-sided p = 1 - 4 / sqrt(18)
    p = significance.paired_t([0.8, 0.9, 0.7], [0.7, 0.7, 0.6])
    assert p == pytest.approx(1 - 4 / math.sqrt(18), rel=1e-9)
    assert significance.paired_t([0.8, 0.9], [0.7, 0.8]) is None  # constant difference
    assert significance.paired_t([0.8], [0.7]) is None  # one seed


def test_paired_bootstrap_known_intervals_and_determinism():
    mean, low, high = significance.paired_bootstrap(np.ones((3, 50)))
    assert (mean, low, high) == (1.0, 1.0, 1.0)
    half = np.tile(np.arange(400) % 2, (2, 1)).astype(float)  # mean 0.5, se 0.025
    mean, low, high = significance.paired_bootstrap(half, resamples=2000)
    assert mean == 0.5
    assert low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.006)
    assert high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.006)
    assert significance.paired_bootstrap(half, resamples=2000) == (mean, low, high)
    noisy = np.random.default_rng(0).normal(size=(2, 100))  # another seed, another interval
    assert significance.paired_bootstrap(noisy, seed=1) != significance.paired_bootstrap(noisy)


def test_comparisons_against_best_and_baseline(tmp_path):
    rng = np.random.default_rng(0)
    recs, lost = [], []
    for seed in (13, 21, 42):
        strong = (rng.random(N) < 0.9).astype(int)
        lost.append(strong[:2].sum())
        near = strong.copy()
        near[:2] = 0  # the best minus two examples: not significantly different
        weak = (rng.random(N) < 0.5).astype(int)
        recs += [
            _with_predictions("prompt-finetune", seed, strong),
            _with_predictions("lora", seed, near),
            _with_predictions("finetune", seed, weak),
        ]
    root, table = _table(tmp_path, recs)
    found = significance.comparisons(table)
    vs_best = {c.row: c for c in found["best"]}
    assert set(vs_best) == {"lora", "finetune"}  # the best is not compared with itself
    lora, ft = vs_best["lora"], vs_best["finetune"]
    assert lora.against == "prompt-finetune" and lora.seeds == (13, 21, 42)
    assert lora.examples == N
    # lora loses exactly the examples 0 and 1 where the best was right
    assert lora.mean_diff == pytest.approx(-np.mean(lost) / N)
    assert lora.boot_diff == pytest.approx(lora.mean_diff)
    assert lora.significant is False and ft.significant is True
    assert ft.boot_high < 0 and ft.t_p < 0.05
    baseline = {c.row: c for c in found["baseline"]}
    assert set(baseline) == {"prompt-finetune", "lora"} and baseline["lora"].against == "finetune"
    assert significance.not_significant(table) == {("lora", table.columns[0])}
    md = build_outputs(root)["leaderboard.md"].decode()
    lora_line = next(line for line in md.splitlines() if line.startswith("| lora |"))
    ft_line = next(line for line in md.splitlines() if line.startswith("| finetune |"))
    assert significance.NOT_SIGNIFICANT in lora_line
    assert significance.NOT_SIGNIFICANT not in ft_line
    assert "paired t-test" in md and "1000 resamples" in md
    # the page marks the same cell and lists every comparison; the CSVs say it in words
    out = build_outputs(root)
    page = out["leaderboard.html"].decode()
    rows = {r.split("</td>", 3)[2].rsplit(">", 1)[1]: r for r in page.split("<tr ")[1:]}
    mark = f'<span class="mark">{significance.NOT_SIGNIFICANT}</span>'
    assert mark in rows["lora"] and mark not in rows["finetune"]
    assert mark not in rows["prompt-finetune"]
    assert '<section id="significance">' in page and page.count("(best)</td>") == 2
    board = {
        r["method_label"]: r for r in csv.DictReader(io.StringIO(out["leaderboard.csv"].decode()))
    }
    verdicts = {k: v["SST-2 vs best"] for k, v in board.items()}
    assert verdicts == {
        "prompt-finetune": "best",
        "lora": "not significant",
        "finetune": "significant",
    }
    assert board["lora"]["precision"] == "fp32"
    sig = list(csv.DictReader(io.StringIO(out["significance.csv"].decode())))
    assert len(sig) == len(found["best"]) + len(found["baseline"]) == 4
    lora_best = next(r for r in sig if r["Method"] == "lora" and r["Against"].endswith("(best)"))
    assert lora_best["Significant"] == "no" and lora_best["Seeds"] == "3"


def test_records_without_predictions_get_the_seed_test_only(tmp_path):
    recs = [record("finetune", "SST-2", s, x) for s, x in ((13, 0.6), (21, 0.7), (42, 0.65))]
    recs += [record("lora", "SST-2", s, x) for s, x in ((13, 0.8), (21, 0.85), (42, 0.9))]
    _, table = _table(tmp_path, recs)
    (c,) = significance.comparisons(table)["best"]
    assert c.row == "finetune" and c.examples == 0 and c.boot_low is None
    # differences -0.2, -0.15, -0.25: mean -0.2, t = -0.2 / (0.05 / sqrt 3) = -6.93 with 2 df
    assert c.mean_diff == pytest.approx(-0.2)
    t = 0.2 / (0.05 / math.sqrt(3))
    assert c.t_p == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)
    assert c.significant is True


def _history(*values, metric="acc"):
    return [{"step": 10 * (i + 1), f"dev_{metric}": v} for i, v in enumerate(values)]


def test_undertrained_rule_on_hand_made_histories(tmp_path):
    rec = record("finetune", "SST-2", 13, 0.7)
    for values, expected in [
        ((0.5, 0.6, 0.7), True),  # still rising
        ((0.5, 0.7, 0.6), False),  # fell at the end
        ((0.5, 0.7, 0.7), False),  # plateau: equal is not rising
        ((0.6, 0.5, 0.65), True),  # last strictly above every earlier one
        ((0.7,), None),  # one evaluation: no verdict
        ((), None),
    ]:
        rec["history"] = _history(*values)
        assert training.undertrained(rec) is expected, values
    recs = []
    for seed, hist in ((13, (0.5, 0.6)), (21, (0.6, 0.5)), (42, (0.5, 0.7))):
        r = record("finetune", "SST-2", seed, 0.7)
        r["history"] = _history(*hist)
        recs.append(r)
    recs.append(record("zero-shot", "SST-2", 13, 0.6))  # no history: never marked
    root, table = _table(tmp_path, recs)
    ft = next(r for r in table.rows if r.method_label == "finetune")
    assert training.cell_marker(ft, table.columns[0]) == " [under-trained: 2/3 seeds]"
    out = build_outputs(root)
    board = {
        r["method_label"]: r for r in csv.DictReader(io.StringIO(out["leaderboard.csv"].decode()))
    }
    assert board["finetune"]["SST-2 under-trained seeds"] == "2/3"
    assert board["zero-shot"]["SST-2 under-trained seeds"] == ""
    page = out["leaderboard.html"].decode()
    ft_row = next(r for r in page.split("<tr ")[1:] if ">finetune</td>" in r)
    assert f'<span class="mark">{training.MARK}</span>' in ft_row and "2/3 seeds" in ft_row
    zs_row = next(r for r in page.split("<tr ")[1:] if ">zero-shot</td>" in r)
    assert training.MARK not in zs_row
    md = build_outputs(root)["leaderboard.md"].decode()
    assert "[under-trained: 2/3 seeds]" in md and "still rising at the last evaluation" in md
    zs_line = next(line for line in md.splitlines() if line.startswith("| zero-shot |"))
    assert "under-trained" not in zs_line
