"""`tunebench run` is never silent for long: a bar on a terminal, one line per dev evaluation
otherwise (issue 16, item 4)."""

from __future__ import annotations

import json
import re

from bench.cli.app import main
from bench.engine.progress import TrainProgress


def test_lines_mode_prints_one_line_per_dev_evaluation(capsys, monkeypatch):
    clock = iter([100.0, 110.0, 130.0])  # start, then after steps 20 and 40 of 100
    monkeypatch.setattr("bench.engine.progress.time.perf_counter", lambda: next(clock))
    p = TrainProgress(100, "lines")
    p.update(20)
    p.dev(20, "acc", 0.75)
    p.update(20)
    p.dev(40, "acc", 0.5)
    p.close()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "train step 20/100  dev acc 0.7500 (best 0.7500 at step 20)  10 s elapsed, ~40 s left",
        "train step 40/100  dev acc 0.5000 (best 0.7500 at step 20)  30 s elapsed, ~45 s left",
    ]


def test_silent_mode_prints_nothing(capsys):
    p = TrainProgress(10, False)
    p.update(5)
    p.dev(5, "acc", 0.5)
    p.close()
    assert capsys.readouterr() == ("", "")


def test_bar_mode_shows_steps_and_dev_score(capsys):
    p = TrainProgress(10, "bar")
    p.bar.disable = False  # tqdm.auto turns itself off without a terminal; force it on here
    p.update(5)
    p.dev(5, "acc", 0.625)
    assert "dev acc 0.6250 (best 0.6250 at step 5)" in str(p.bar)
    assert "5/10" in str(p.bar)
    p.close()


def test_run_off_a_terminal_prints_a_line_per_dev_evaluation(tmp_path, capsys, one_thread):
    args = ["run", "--backbone", "tiny-roberta", "--task", "RTE", "--method", "finetune"]
    args += ["--k", "4", "--seed", "13", "--set", "steps=4", "--set", "eval_every=2"]
    assert main([*args, "--out", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    steps = re.findall(r"^train step (\d+)/4  dev acc \d\.\d{4} \(best", err, re.M)
    assert steps == ["2", "4"]


def test_a_one_step_run_measures_its_step_and_prints_its_summary(tmp_path, capsys, one_thread):
    """A run of one training step (e.g. to read a method's starting point) measures the peak
    memory of that step, as longer runs measure their second, and prints its summary line."""
    args = ["run", "--backbone", "tiny-llama", "--task", "SST-2", "--method", "prefix-tuning"]
    args += ["--k", "4", "--seed", "13", "--set", "steps=1", "--set", "eval_every=1"]
    assert main([*args, "--out", str(tmp_path / "r.json")]) == 0
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["memory"]["peak_bytes"] > rec["memory"]["static_bytes"] > 0
    out = capsys.readouterr().out
    assert f"peak {rec['memory']['peak_bytes'] / 2**20:.0f} MiB" in out
