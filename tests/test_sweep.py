"""Sweeps: search per cell (tie rule, pruning, failures, grid), profiles, claims, records,
resume after SIGKILL, and two workers sharing one journal file.

The sweeps in subprocesses run the CLI (``python -m bench sweep``) with one torch thread
(tiny models gain nothing from more, and a busy machine loses a lot) and the parent's
environment, so TUNEBENCH_CACHE is shared and tiny backbones are built once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch

from bench.cli.app import main
from bench.sweep import claims, search
from bench.sweep.driver import Context, state, sweep
from bench.sweep.profile import ProfileError, SweepCell, load, packaged, plan
from bench.sweep.search import LMBFF_GRID, SearchConfig
from methods import REGISTRY
from methods.base import Method
from methods.finetune import METHOD as FINETUNE
from tasks.splits import LMBFF_SEEDS

REPO = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def small_profile(
    tmp_path: Path,
    methods=("finetune", "head-only", "zero-shot"),
    seeds=(13, 21, 42),
    search_table="trials = 2\npruner_startup_trials = 1\n",
) -> Path:
    """Tiny RoBERTa on RTE (277 test pairs), K=4: a few seconds per cell."""
    entries = "".join(f'[[methods]]\nmethod = "{m}"\n' for m in methods)
    path = tmp_path / "small.toml"
    path.write_text(
        f'backbones = ["tiny-roberta"]\ntasks = ["RTE"]\nk = [4]\nseeds = {list(seeds)}\n'
        f"[search]\n{search_table}"
        "[settings]\nsteps = 4\neval_every = 2\neval_batch_size = 64\n" + entries
    )
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args, "--threads", "1", "--no-progress"]


def check_precision_and_work(datas, results: Path) -> None:
    """The setting's precision and the cell's work are in every record; the frozen trunks'
    features went to the results' disk cache."""
    for data in datas:
        rec = json.loads(data)
        assert rec["config"]["precision"] in ("fp32", "bf16")
        cell, chosen = rec["compute"]["cell"]["flops"], rec["compute"]["total"]["flops"]
        assert cell >= chosen >= 0  # 0: a frozen trunk that found everything cached
        assert chosen > 0 or rec["params"]["trainable"] < rec["params"]["backbone_total"]
    assert list((results / "cache" / "features").rglob("*.safetensors"))


def records(results: Path) -> dict[str, bytes]:
    """Every record file under ``results`` (relative path -> bytes)."""
    return {
        p.relative_to(results).as_posix(): p.read_bytes()
        for p in sorted(results.rglob("*.json"))
        if not p.name.startswith(".")
    }


def lines_by_cell(stdout: str) -> list[str]:
    """Cells named by a worker's per-cell lines (each line starts with the cell)."""
    return [line.split()[0] for line in stdout.splitlines() if "/k4-seed" in line.split(" ")[0]]


# --- search ----------------------------------------------------------------------------------


def fake_method(space=None, trains=True) -> Method:
    return Method(name="fake", family="full", summary="", build=None, head="classifier",
                  space=space, trains=trains)  # fmt: skip


def fake_result(dev: float, loss: float, step: int = 2):
    """What the search reads of the runner's Trial."""
    return SimpleNamespace(
        dev={"acc": dev}, best_step=step, history=[{"step": step, "dev_loss": loss}]
    )


def study(name="cell", config=None):
    return search.new_study(name, optuna.storages.InMemoryStorage(), config or SearchConfig())


@pytest.mark.parametrize(
    "losses, chosen_lr",
    [({1e-3: 0.6, 2e-3: 0.4, 3e-3: 0.6}, 2e-3), ({1e-3: 0.5, 2e-3: 0.5, 3e-3: 0.5}, None)],
)
def test_ties_on_dev_are_broken_by_dev_loss_then_the_earlier_trial(losses, chosen_lr):
    config = SearchConfig(mode="grid", grid={"lr": [1e-3, 2e-3, 3e-3]})
    out = search.run_search(
        study(config=config), fake_method(), {}, config,
        lambda hp, report: fake_result(0.75, losses[hp["lr"]]), "acc",
    )  # fmt: skip
    assert [t["dev"] for t in out.trials] == [0.75] * 3
    chosen = out.trials[out.best_number]
    if chosen_lr is not None:
        assert chosen["params"]["lr"] == chosen_lr  # lower dev loss, wherever it came in order
    else:
        assert out.best_number == 0  # all equal: the earliest trial
    assert chosen["dev_loss"] == losses[chosen["params"]["lr"]]


def test_failed_and_pruned_trials_are_recorded_and_the_search_goes_on():
    config = SearchConfig(trials=4, pruner_startup_trials=1)
    calls = []

    def run(hp, report):
        calls.append(hp)
        n = len(calls)
        if n == 2:
            raise MemoryError("simulated out of memory")
        if n == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        for step in (2, 4):
            report(step, 0.9 if n == 1 else 0.1)  # the 4th falls below the median: pruned
        return fake_result(0.9, 0.3, step=4)

    s = study(config=config)
    out = search.run_search(s, FINETUNE, {}, config, run, "acc")
    assert [t["state"] for t in out.trials] == ["COMPLETE", "FAIL", "FAIL", "PRUNED"]
    assert out.trials[1]["error"] == "MemoryError: simulated out of memory"
    assert "OutOfMemoryError" in out.trials[2]["error"] and out.trials[2]["traceback"]
    assert out.trials[3]["dev"] == 0.1 and out.trials[3]["steps"] == 2  # stopped at its 1st eval
    assert out.best_number == 0 and out.trials[0]["steps"] == 4
    states = [t.state.name for t in s.trials]
    assert states == ["COMPLETE", "FAIL", "FAIL", "PRUNED"]  # Optuna's view agrees
    assert all(
        set(t) >= {"number", "params", "seconds", "dev_loss", "best_step"} for t in out.trials
    )


def test_the_sampler_is_seeded_from_the_cell():
    def lrs(name):
        s = study(name, SearchConfig(trials=3))
        return [search.suggest(s.ask(), FINETUNE, {}, SearchConfig())["lr"] for _ in range(3)]

    assert lrs("tiny/RTE/finetune/k4-seed13") == lrs("tiny/RTE/finetune/k4-seed13")
    assert lrs("tiny/RTE/finetune/k4-seed13") != lrs("tiny/RTE/finetune/k4-seed21")


def test_settings_a_profile_fixes_are_not_searched():
    config = SearchConfig(trials=3)
    assert search.searched_names(FINETUNE, {}, config) == ["batch_size", "lr"]
    assert search.searched_names(FINETUNE, {"batch_size": 8}, config) == ["lr"]
    seen = []
    search.run_search(study(config=config), FINETUNE, {"batch_size": 8}, config,
                      lambda hp, r: seen.append(hp) or fake_result(0.5, 1.0), "acc")  # fmt: skip
    assert len(seen) == 3 and {hp["batch_size"] for hp in seen} == {8}
    assert len({hp["lr"] for hp in seen}) == 3
    everything = {"batch_size": 8, "lr": 1e-5}
    assert search.n_trials(FINETUNE, everything, config) == 1  # nothing left to search


def test_methods_that_do_not_train_run_once_with_their_settings():
    method = REGISTRY["zero-shot"]
    assert search.n_trials(method, {}, SearchConfig(trials=8)) == 1
    assert search.n_trials(method, {}, SearchConfig(mode="grid", grid=LMBFF_GRID)) == 1


def test_grid_mode_is_lmbffs_protocol(data_root):
    cells, _ = plan(load("paper"), data_root)
    cell = next(c for c in cells if c.method == "prompt-finetune")
    assert cell.backbone == "roberta-large" and cell.k == 16
    assert cell.search.mode == "grid" and dict(cell.search.grid) == LMBFF_GRID
    assert cell.settings["steps"] == 1000 and cell.settings["eval_every"] == 100
    seen = []
    s = study(cell.study_name, cell.search)
    assert isinstance(s.pruner, optuna.pruners.NopPruner)
    search.run_search(s, REGISTRY[cell.method], cell.settings, cell.search,
                      lambda hp, r: seen.append(hp) or fake_result(0.5, 1.0), "acc")  # fmt: skip
    points = {(hp["lr"], hp["batch_size"]) for hp in seen}
    assert len(seen) == 9 and points == {(lr, b) for lr in (1e-5, 2e-5, 5e-5) for b in (2, 4, 8)}
    assert {(hp["steps"], hp["eval_every"]) for hp in seen} == {(1000, 100)}


def test_storage_is_a_journal_file_or_a_sqlalchemy_url(tmp_path):
    for where in (tmp_path / "a" / "optuna.journal", f"sqlite:///{tmp_path / 'optuna.db'}"):
        storage = search.open_storage(where)
        s = search.new_study("cell", storage, SearchConfig(trials=2))
        search.run_search(s, FINETUNE, {}, SearchConfig(trials=2),
                          lambda hp, r: fake_result(0.5, 1.0), "acc")  # fmt: skip
        again = optuna.load_study(study_name="cell", storage=search.open_storage(where))
        assert [t.state.name for t in again.trials] == ["COMPLETE", "COMPLETE"]
    url = "postgresql://bench:s3cret@db.example:5432/sweeps"
    assert search.describe_storage(url) == "postgresql://bench:***@db.example:5432/sweeps"
    assert "s3cret" not in search.describe_storage(url)


# --- profiles --------------------------------------------------------------------------------


def families(cells: list[SweepCell]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for c in cells:
        out.setdefault(c.family, set()).add(c.label)
    return out


def test_packaged_profiles(data_root):
    assert packaged() == ["budget", "budget-cpu", "cpu", "cpu-all", "paper", "smoke"]
    from bench.cli.sweep_commands import _PACKAGED  # what `tunebench sweep --help` lists

    assert _PACKAGED == packaged()
    smoke, _ = plan(load("smoke"), data_root)
    assert {c.method for c in smoke} == set(REGISTRY)  # every method, new ones included
    assert len({c.task for c in smoke}) == 2 and {c.seed for c in smoke} == {13, 21}
    assert all(c.backbone.startswith("tiny-") for c in smoke)
    searched = {c.method: c.settings for c in smoke if c.method in ("autoprompt", "finetune")}
    assert searched["autoprompt"]["iterations"] == 2  # [overrides.autoprompt], one method only
    assert "iterations" not in searched["finetune"] and searched["finetune"]["steps"] == 4

    cpu, _ = plan(load("cpu"), data_root)
    assert {c.task for c in cpu} == {"SST-2"} and {c.k for c in cpu} == {16}
    assert {c.backbone for c in cpu} == {"smollm2-135m", "minilm-l6"}
    seeds = {m: {c.seed for c in cpu if c.label == m} for m in {c.label for c in cpu}}
    assert {m for m, s in seeds.items() if s == set(LMBFF_SEEDS)} >= {
        "zero-shot", "zero-shot+cc", "zero-shot+kpt", "head-only", "lora+lm-head", "bitfit",
        "finetune", "prompt-finetune"}  # fmt: skip
    searched = {"autoprompt", "lmbff-auto-label", "lmbff-auto-template", "ptr",
                "prompt-finetune+proto", "lora+lm-head+soft"}  # fmt: skip
    assert {m: s for m, s in seeds.items() if s != set(LMBFF_SEEDS)} == dict.fromkeys(
        searched, {13}
    )  # searched prompts and learned verbalizers: the seed only, to fit the hour
    assert all(len(labels) >= 2 for labels in families(cpu).values()), families(cpu)
    assert set(families(cpu)) == {"full", "partial", "prompt"}
    assert all(c.estimate_s for c in cpu)
    assert sum(c.estimate_s for c in cpu) <= 50 * 60  # the real run must fit 60 minutes

    every, notes = plan(load("cpu-all"), data_root)
    assert {c.method for c in every} == set(REGISTRY)
    assert {c.task for c in every} >= {"SST-2", "sst-5", "mr", "cr", "trec", "RTE", "STS-B"}
    assert "MNLI" not in {c.task for c in every}  # its data is not whole here
    assert any(str(n).startswith("bitfit on smollm2-135m") for n in notes)  # Llama: no biases
    # pair tasks run on the causal LM through their answer-last "causal" prompt variants
    assert any(
        c.task == "RTE" and c.method == "zero-shot" and c.backbone == "smollm2-135m" for c in every
    )

    paper, _ = plan(load("paper"), data_root)
    assert {c.backbone for c in paper} == {"roberta-large"} and len({c.task for c in paper}) == 15
    assert {c.seed for c in paper} == set(LMBFF_SEEDS)


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour = 1\n", "unknown key(s) ['colour']"),
        ('[[methods]]\nmethod = "fine-tune"\n', "unknown method 'fine-tune'"),
        ('[[methods]]\nmethod = "finetune"\nsettings = { rank = 4 }\n', "setting of method finetune"),
        ('[[methods]]\nmethod = "bitfit"\nbackbones = ["tiny-llama"]\n', "no bias terms"),
        ('[[methods]]\nmethod = "lora"\n[[methods]]\nmethod = "lora"\nsettings = { r = 4 }\n',
         "two method entries make the cell"),
        ('[search]\nmode = "grid"\ngrid = { lr = [1e-5] }\n[settings]\nlr = 1e-4\n'
         '[[methods]]\nmethod = "finetune"\n', "both fixed and on the grid"),
        ("[overrides.fine-tune]\nlr = 1e-5\n", "unknown method 'fine-tune'"),
        ('[[methods]]\nmethod = "finetune"\nseeds = [13, 14]\n',
         "method finetune: seeds [14] are not among the profile's seeds [13]"),
        ("[overrides.autoprompt]\nrank = 4\n", "setting of method autoprompt"),
        ('[[methods]]\nmethod = "finetune"\n[overrides.autoprompt]\niterations = 2\n',
         '[overrides] is for methods = "all"'),
    ],
)  # fmt: skip
def test_profile_mistakes_are_reported_before_any_work(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(
        'backbones = ["tiny-roberta"]\ntasks = ["RTE"]\nk = [4]\nseeds = [13]\n'
        + ("" if "[[methods]]" in text else 'methods = "all"\n')
        + text
    )
    with pytest.raises(Exception) as err:
        plan(load(str(path)), None)
    assert message in str(err.value)
    assert isinstance(err.value, ProfileError) or "unknown method" in message


# --- claims ----------------------------------------------------------------------------------


def test_a_claim_is_exclusive_and_freed_when_its_holder_is_killed(tmp_path):
    record = tmp_path / "cell" / "k16-seed13.json"
    with claims.claim(record) as first:
        with claims.claim(record) as second:
            assert first and not second
        assert claims.holder(record)["pid"] == os.getpid()
    assert not claims.claim_path(record).exists()  # released and removed

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(claims.claim_path(record))!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with claims.claim(record) as got:
            assert not got
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with claims.claim(record) as got:  # the dead holder's file is still there, its lock is not
        assert got


def test_dry_run_shows_each_cells_state(tmp_path, data_root, capsys):
    profile = small_profile(tmp_path)
    cells, _ = plan(load(str(profile)), data_root)
    results = tmp_path / "results"
    done, failed, running = (c.record_path(results) for c in cells[:3])
    for path, status in ((done, "ok"), (failed, "failed")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"status": status, "error": "boom" if status == "failed" else None})
        )
    with claims.claim(running):
        assert main(["sweep", str(profile), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[:3]] == ["done", "failed", "running"]
    assert "boom" in out[1] and f"pid {os.getpid()}" in out[2]
    assert all(line.startswith("to do") for line in out[3 : len(cells)])
    assert "9 cells: 1 done, 1 failed, 1 running, 6 to do" in "\n".join(out)


def test_only_options_keep_a_subset_of_the_cells(tmp_path, data_root, capsys):
    profile = str(small_profile(tmp_path))
    results = str(tmp_path / "results")
    args = ["sweep", profile, "--results", results, "--dry-run"]
    assert main([*args, "--methods", "head-only,zero-shot", "--tasks", "RTE"]) == 0
    out = capsys.readouterr().out
    assert "6 cells: 0 done" in out and "finetune" not in out.replace("head-only", "")
    assert main([*args, "--methods", "head-only", "--seeds", "13"]) == 0
    assert "1 cells: 0 done" in capsys.readouterr().out  # seed 13 first, the rest later
    assert main([*args, "--tasks", "SST-2"]) == 2
    assert "--tasks: SST-2 not in this profile; it has: RTE" in capsys.readouterr().err


def test_only_options_keep_the_notes_on_the_cells_they_keep():
    from argparse import Namespace

    from bench.cli.sweep_commands import _only_notes
    from bench.sweep.profile import Skipped

    notes = [
        Skipped("minilm-l6", "RTE", "zero-shot", "zero-shot", "an encoder"),
        Skipped("minilm-l6", "SST-2", "zero-shot", "zero-shot+kpt", "an encoder"),
        Skipped("smollm2-135m", "SST-2", "bitfit", "bitfit", "no bias terms"),
    ]
    assert str(notes[1]) == "zero-shot+kpt on minilm-l6, SST-2: not applicable (an encoder)"
    sst2 = Namespace(tasks="SST-2", methods=None, backbones=None)
    assert _only_notes(notes, sst2) == notes[1:]
    assert _only_notes(notes, Namespace(tasks="SST-2", methods="zero-shot", backbones="")) == [
        notes[1]
    ]
    assert _only_notes(notes, Namespace(tasks=None, methods=None, backbones=None)) == notes


# --- sweeps ----------------------------------------------------------------------------------


def nan_loss_finetune(backbone, task, hp):
    model = FINETUNE.build(backbone, task, hp)
    model.loss = lambda logits, batch: logits.sum() * float("nan")
    return model


def oom_at_high_lr(backbone, task, hp):
    if hp["lr"] > 1e-4:
        raise MemoryError("simulated out of memory")
    return FINETUNE.build(backbone, task, hp)


def test_a_failing_trial_does_not_stop_the_sweep(tmp_path, data_root, monkeypatch, one_thread):
    for name, build in (("nan-loss", nan_loss_finetune), ("oom-high-lr", oom_at_high_lr)):
        monkeypatch.setitem(REGISTRY, name, Method(name=name, family="full", summary="",
                                                   build=build, head="classifier"))  # fmt: skip
    profile = small_profile(
        tmp_path, methods=("nan-loss", "oom-high-lr", "head-only"), seeds=(13,),
        search_table='mode = "grid"\ngrid = { lr = [1e-5, 1e-3] }\n',
    )  # fmt: skip
    cells, _ = plan(load(str(profile)), data_root)
    results = tmp_path / "results"
    ctx = Context(results, search.open_storage(results / "j"), "j", data_root, torch.device("cpu"))
    ran = {cell.label: record for cell, record in sweep(cells, ctx)}
    assert list(ran) == ["nan-loss", "oom-high-lr", "head-only"]  # all three ran, in order

    nan = ran["nan-loss"]
    assert nan["status"] == "failed" and "no trial completed" in nan["error"]
    assert [t["state"] for t in nan["trials"]] == ["FAIL", "FAIL"]
    assert all("TrainingFailed: loss is nan at step 1" == t["error"] for t in nan["trials"])

    oom = ran["oom-high-lr"]
    assert oom["status"] == "ok"  # one trial failed, the other was chosen and tested
    by_lr = {t["params"]["lr"]: t for t in oom["trials"]}
    assert by_lr[1e-3]["state"] == "FAIL" and "MemoryError" in by_lr[1e-3]["error"]
    assert by_lr[1e-5]["state"] == "COMPLETE"
    assert oom["config"]["hyperparameters"]["lr"] == 1e-5 and oom["test_score"] is not None
    assert ran["head-only"]["status"] == "ok"
    assert [state(c, results)[0] for c in cells] == ["failed", "done", "done"]


def test_reproduce_reruns_into_a_fresh_folder_and_compares(tmp_path, data_root, capsys, one_thread):
    profile = small_profile(tmp_path, methods=("head-only", "zero-shot"), seeds=(13,))
    results = tmp_path / "results"
    common = ["--results", str(results), "--threads", "1", "--no-progress"]
    assert main(["sweep", str(profile), *common]) == 0  # the records a clone would have
    committed = records(results / "small")
    capsys.readouterr()
    again = tmp_path / "again"
    assert main(["reproduce", str(profile), *common, "--out", str(again)]) == 0
    out = capsys.readouterr().out
    assert len(records(again / "small")) == 2 and records(results / "small") == committed
    assert "tiny-roberta/RTE/head-only/k4-seed13  lr=" in out  # the cell ran again
    assert "reproduced exactly: 2 of 2 cells identical" in out.splitlines()[-1]
    assert (again / "leaderboard.md").is_file()
    assert main(["reproduce", str(profile), *common]) == 0  # default: <results>/reproduce/
    (fresh,) = (results / "reproduce").iterdir()
    assert fresh.name.startswith("small-") and len(records(fresh / "small")) == 2
    assert main(["reproduce", str(profile), *common, "--out", str(results)]) == 2


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path, data_root):
    results = tmp_path / "results"
    run = subprocess.run(cli("sweep", "smoke", "--results", str(results)), cwd=REPO,
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    cells, _ = plan(load("smoke"), data_root)
    written = records(results)
    assert sorted(written) == sorted(f"smoke/{c.name}.json" for c in cells)
    assert sorted(lines_by_cell(run.stdout)) == sorted(c.name for c in cells)
    for name, data in written.items():
        rec = json.loads(data)
        assert rec["status"] == "ok", (name, rec["error"])
        assert rec["profile"] == "smoke" and rec["search"]["tie_rule"] == search.TIE_RULE
        assert rec["search"]["chosen_trial"] in [t["number"] for t in rec["trials"]]
        assert all(t["state"] in ("COMPLETE", "PRUNED", "FAIL") for t in rec["trials"])
        assert len(rec["trials"]) == rec["search"]["n_trials"]
    assert not [p for p in results.rglob("*") if p.suffix in (".claim", ".tmp")]
    check_precision_and_work(written.values(), results)


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_redoing_or_losing_cells(tmp_path, data_root):
    profile, results = small_profile(tmp_path), tmp_path / "results"
    cells, _ = plan(load(str(profile)), data_root)
    first = subprocess.Popen(cli("sweep", str(profile), "--results", str(results)), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 600
    while len(records(results)) < 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # mid-way: in the middle of a later cell
    first.communicate()
    before = records(results)
    assert 3 <= len(before) < len(cells)
    for data in before.values():  # whole records only
        assert json.loads(data)["status"] == "ok"

    second = subprocess.run(cli("sweep", str(profile), "--results", str(results)), cwd=REPO,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    after = records(results)
    assert sorted(after) == sorted(f"small/{c.name}.json" for c in cells)  # one record per cell
    assert all(after[name] == data for name, data in before.items())  # finished: not rerun
    rerun = lines_by_cell(second.stdout)
    assert sorted(f"small/{c}.json" for c in rerun) == sorted(set(after) - set(before))
    assert not [p for p in results.rglob("*") if p.suffix in (".claim", ".tmp")]
    check_precision_and_work(after.values(), results)


@pytest.mark.slow
def test_two_workers_on_one_journal_file_split_the_cells(tmp_path, data_root):
    profile = small_profile(tmp_path, seeds=(13, 21, 42, 87, 100))
    results = tmp_path / "results"
    cells, _ = plan(load(str(profile)), data_root)
    workers = [
        subprocess.Popen(cli("sweep", str(profile), "--results", str(results)), cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outs = [w.communicate(timeout=900) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outs]
    done = [lines_by_cell(out) for out, _ in outs]
    assert all(done), "both workers should have run some cells"
    assert not set(done[0]) & set(done[1])  # no cell run by both
    assert sorted(done[0] + done[1]) == sorted(c.name for c in cells)
    # the shared journal agrees: each cell's study was created once (a rerun recreates it)
    ops = [json.loads(line) for line in (results / "small" / "optuna.journal").open()]
    created = Counter(op["study_name"] for op in ops if op["op_code"] == 0)
    assert created == Counter({c.study_name: 1 for c in cells})
    # a frozen trunk's test pass ran once for both workers (the shared feature cache): one
    # record per method computed it, the others read it
    for method in ("zero-shot", "head-only"):
        recs = [json.loads(p.read_text()) for p in results.rglob(f"{method}/*.json")]
        computed = [r for r in recs if r["compute"]["test"]["test"]["tokens"] > 0]
        assert len(recs) == 5 and len(computed) == 1, method


def test_records_call_the_code_dirty_but_not_the_results_a_sweep_writes(tmp_path):
    from bench.engine.measure import git_state

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path,
                       check=True, capture_output=True)  # fmt: skip

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "leaderboard.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    (tmp_path / "results" / "leaderboard.md").unlink()  # a fresh `make reproduce` run
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)["dirty"] is True
