"""Budget curves: the ``steps`` crossing of a profile, the packaged ``budget`` profile's plan,
and the report's "steps" figure, on hand-made records and a tiny end-to-end sweep."""

from __future__ import annotations

import json

import pytest
from report_records import record, write_all

from bench.cli.app import main
from bench.core.errors import TunebenchError
from bench.report import budget, figures
from bench.report.aggregate import aggregate, load_records
from bench.report.make import build_outputs
from bench.sweep.profile import load, plan

STEPS = [12, 50, 200, 1000]


def test_budget_profile_crosses_every_trained_method_with_every_budget(data_root):
    cells, _ = plan(load("budget"), data_root)
    assert {c.backbone for c in cells} == {"smollm2-135m"} and {c.task for c in cells} == {"SST-2"}
    assert {c.seed for c in cells} == {13, 21, 42} and {c.k for c in cells} == {16}
    rows = {c.label for c in cells}
    trained = ["finetune", "prompt-finetune", "lora", "lora+lm-head", "head-only",
               "prompt-tuning", "prefix-tuning", "p-tuning-v2"]  # fmt: skip
    assert rows == {f"{m}@{n}steps" for m in trained for n in STEPS} | {"zero-shot"}
    for c in cells:
        if c.label == "zero-shot":
            assert "steps" not in c.settings  # nothing trains: run once per seed
            continue
        n = budget.budget_of(c.label)[1]
        assert c.settings["steps"] == n and c.settings["eval_every"] == max(1, n // 5)
        assert c.settings["batch_size"] == 8
    assert len(cells) == (len(trained) * len(STEPS) + 1) * 3


def test_budget_cpu_profile_is_the_same_rows_at_each_method_default_and_one_trial(data_root):
    """``budget-cpu``: the rows of ``budget``, nothing searched: every trained cell fixes its
    method's default learning rate (and soft prompts their default length), so it runs once."""
    from bench.sweep.search import SearchConfig, n_trials
    from methods import get_method

    cells, _ = plan(load("budget-cpu"), data_root)
    gpu, _ = plan(load("budget"), data_root)
    assert {(c.label, c.seed) for c in cells} == {(c.label, c.seed) for c in gpu}
    for c in cells:
        method = get_method(c.method)
        assert n_trials(method, c.settings, SearchConfig(trials=1)) == 1, c.label
        if method.trains:
            assert c.settings["lr"] == method.defaults["lr"], c.label
            assert c.settings["steps"] == budget.budget_of(c.label)[1]


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps = []\n", "non-empty list of positive integers"),
        ("steps = [0, 4]\n", "non-empty list of positive integers"),
        ("steps = [4, 4]\n", "steps lists 4 twice; give each once"),
        ("steps = [4]\nevals_per_run = 0\n", "evals_per_run must be a positive integer"),
    ],
)
def test_bad_budgets_are_reported_before_any_work(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(
        'backbones = ["tiny-llama"]\ntasks = ["SST-2"]\nk = [4]\nseeds = [13]\n'
        + text
        + '[[methods]]\nmethod = "finetune"\n'
    )
    with pytest.raises(TunebenchError, match=message):  # ProfileError or validate's
        plan(load(str(path)), None)


def test_steps_figure_from_hand_made_budget_records(tmp_path):
    recs = []
    for seed in (13, 21):
        for n, score in ((12, 0.55), (50, 0.7), (200, 0.8)):
            r = record("finetune", "SST-2", seed, score + 0.01 * (seed == 21))
            r["cell"]["method_label"] = f"finetune@{n}steps"
            recs.append(r)
        recs.append(record("zero-shot", "SST-2", seed, 0.78))
    root = write_all(tmp_path, recs)
    (table,) = aggregate(load_records(root)).tables
    lines = budget.curves(table)
    assert list(lines) == ["finetune"] and [n for n, _ in lines["finetune"]] == [12, 50, 200]
    assert lines["finetune"][1][1].cells[table.columns[0]].stats.mean == pytest.approx(0.705)
    assert budget.budget_of("lora+lm-head@1000steps") == ("lora+lm-head", 1000)
    assert budget.budget_of("zero-shot") is None
    out = figures.render(table)
    assert set(out) == {"params", "seeds", "steps"}
    assert out["steps"]["png"][:8] == b"\x89PNG\r\n\x1a\n" and out["steps"]["svg"]
    assert figures.render(table)["steps"] == out["steps"]  # byte-identical


def test_budget_table_ranks_the_methods_at_each_budget(tmp_path):
    recs = []
    for seed in (13, 21):
        for method, scores in (
            ("finetune", (0.55, 0.7, 0.8)),
            ("prompt-finetune", (0.8, 0.82, 0.79)),
        ):
            for n, score in zip((12, 50, 200), scores):
                r = record(method, "SST-2", seed, score)
                r["cell"]["method_label"] = f"{method}@{n}steps"
                recs.append(r)
        recs.append(record("zero-shot", "SST-2", seed, 0.78))
    root = write_all(tmp_path, recs)
    (table,) = aggregate(load_records(root)).tables
    labels = [r.method_label for r in table.rows]  # a method's budgets by steps, not as text
    assert labels[:3] == ["finetune@12steps", "finetune@50steps", "finetune@200steps"]
    headers, rows = budget.pivot(table, table.columns[0])
    assert headers == ["Method", "12 steps", "50 steps", "200 steps"]
    by = {r[0]: r[1:] for r in rows}
    assert by["finetune"] == ["55.0 (0.0)", "70.0 (0.0)", "80.0 (0.0)"]
    assert by["ranking (best first)"] == [
        "prompt-finetune > finetune",
        "prompt-finetune > finetune",
        "finetune > prompt-finetune",
    ]
    assert by["zero-shot (no training)"] == ["78.0 (0.0)"] * 3
    md = build_outputs(root)["leaderboard.md"].decode()
    assert "| ranking (best first) | prompt-finetune &gt; finetune |" in md
    page = build_outputs(root)["leaderboard.html"].decode()
    assert (
        "<td>prompt-finetune &gt; finetune</td>" in page and "Test score against training" in page
    )
    plain = write_all(tmp_path / "plain", [record("finetune", "SST-2", 13, 0.6)])
    (table,) = aggregate(load_records(plain)).tables
    assert budget.pivot(table, table.columns[0]) is None
    assert "by training budget" not in build_outputs(plain)["leaderboard.md"].decode()


def test_no_steps_figure_without_budget_rows(tmp_path):
    root = write_all(tmp_path, [record("finetune", "SST-2", 13, 0.6)])
    assert not [p for p in build_outputs(root) if "-steps." in p]


def test_a_tiny_budget_sweep_runs_and_reports(tmp_path, data_root, one_thread):
    profile = tmp_path / "tiny-budget.toml"
    profile.write_text(
        'backbones = ["tiny-roberta"]\ntasks = ["RTE"]\nk = [4]\nseeds = [13]\nsteps = [2, 4]\n'
        "evals_per_run = 2\n[search]\ntrials = 1\n[settings]\nbatch_size = 4\n"
        "eval_batch_size = 64\nmax_length = 64\n"
        '[[methods]]\nmethod = "head-only"\n[[methods]]\nmethod = "zero-shot"\n'
    )
    results = tmp_path / "results"
    argv = ["sweep", str(profile), "--results", str(results), "--threads", "1"]
    assert main([*argv, "--no-progress", "--device", "cpu"]) == 0
    assert main(["report", "--results", str(results)]) == 0
    written = sorted(p.relative_to(results).as_posix() for p in results.rglob("k4-seed13.json"))
    assert written == [
        "tiny-budget/tiny-roberta/RTE/head-only@2steps/k4-seed13.json",
        "tiny-budget/tiny-roberta/RTE/head-only@4steps/k4-seed13.json",
        "tiny-budget/tiny-roberta/RTE/zero-shot/k4-seed13.json",
    ]
    rec = json.loads((results / written[1]).read_text())
    assert [h["step"] for h in rec["history"]] == [2, 4]  # eval_every = 4 // 2
    assert rec["config"]["hyperparameters"]["steps"] == 4
    assert list((results / "figures").glob("*-steps.png"))
