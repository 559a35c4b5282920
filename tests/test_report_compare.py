"""`tunebench compare` (and the last step of `tunebench reproduce`): two folders of hand-made
records compared cell by cell, identical / within the cell's seed std / different, with the
environment difference and a one-line verdict."""

from __future__ import annotations

import pytest
from report_records import record, write_all

from bench.cli.app import main
from bench.report.aggregate import load_records
from bench.report.compare import DIFFERENT, IDENTICAL, WITHIN, compare, lines

SEEDS = (13, 21, 42)


def _reference(root):
    # finetune: 0.80 0.85 0.90 (std 4.08 points); zero-shot: 0.70 on every seed (std 0)
    recs = [record("finetune", "SST-2", s, 0.80 + 0.05 * i) for i, s in enumerate(SEEDS)]
    recs += [record("zero-shot", "SST-2", s, 0.70) for s in SEEDS]
    recs += [record("lora", "SST-2", 13, 0.60)]  # one seed: no std
    for r in recs:
        r["env"]["hardware"] = {"cpu": "AMD EPYC", "cpu_count": 2, "torch_threads": 2}
        r["env"]["packages"] = {"torch": "2.13.0+cpu", "transformers": "5.24.0"}
    return write_all(root, recs)


def _rerun(root, scores: dict, *, cpu="AMD EPYC", torch="2.13.0+cpu"):
    recs = []
    for (method, seed), score in scores.items():
        rec = (
            record(method, "SST-2", seed, error="boom")
            if score is None
            else record(method, "SST-2", seed, score)
        )
        rec["env"]["hardware"] = {"cpu": cpu, "cpu_count": 2, "torch_threads": 2}
        rec["env"]["packages"] = {"torch": torch, "transformers": "5.24.0"}
        recs.append(rec)
    return write_all(root, recs)


def test_identical_within_std_and_different(tmp_path):
    ref = _reference(tmp_path / "ref")
    new = _rerun(
        tmp_path / "new",
        {
            ("finetune", 13): 0.80,  # identical
            ("finetune", 21): 0.88,  # +3.0 points, std 4.08: within
            ("finetune", 42): 0.80,  # -10 points: different
            ("zero-shot", 13): 0.70,  # identical
            ("zero-shot", 21): 0.7001,  # std 0: any change is different
            ("lora", 13): 0.61,  # one seed: no std, different
            ("bitfit", 13): 0.5,  # not in the reference: new
        },
        torch="2.14.0+cpu",
    )
    comp = compare(ref, new)
    got = {(c.key[4], c.key[6]): c.verdict for c in comp.cells}
    assert got == {
        ("finetune", 13): IDENTICAL,
        ("finetune", 21): WITHIN,
        ("finetune", 42): DIFFERENT,
        ("zero-shot", 13): IDENTICAL,
        ("zero-shot", 21): DIFFERENT,
        ("lora", 13): DIFFERENT,
    }
    assert comp.not_rerun == ["tiny-roberta/SST-2/zero-shot/k16-seed42"]
    assert comp.new == ["tiny-roberta/SST-2/bitfit/k16-seed13"]
    assert comp.env == {"torch": ("2.13.0+cpu", "2.14.0+cpu")}
    assert comp.verdict == (
        "NOT reproduced: 3 of 6 cells differ beyond their seed std "
        "(2 identical, 1 within std, 3 different; 1 not re-run; 1 new)"
    )
    text = lines(comp)
    row = next(line for line in text if line.startswith("tiny-roberta/SST-2/finetune/k16-seed21"))
    assert row.split() == [
        "tiny-roberta/SST-2/finetune/k16-seed21", "85.00", "88.00", "+3.00", "4.08",
        "within", "std", "torch", "2.13.0+cpu", "->", "2.14.0+cpu",
    ]  # fmt: skip
    assert "  torch: 2.13.0+cpu -> 2.14.0+cpu" in text and text[-1] == comp.verdict


def test_all_identical_and_a_failed_rerun(tmp_path):
    ref = _reference(tmp_path / "ref")
    same = {("finetune", s): 0.80 + 0.05 * i for i, s in enumerate(SEEDS)}
    comp = compare(ref, _rerun(tmp_path / "same", same, cpu="Intel Xeon"))
    assert [c.verdict for c in comp.cells] == [IDENTICAL] * 3
    assert comp.verdict == (
        "reproduced exactly: 3 of 3 cells identical (3 identical, 0 within std, 0 different; "
        "4 not re-run)"
    )
    assert comp.env == {"cpu": ("AMD EPYC", "Intel Xeon")}
    assert all(c.env == {"cpu": ("AMD EPYC", "Intel Xeon")} for c in comp.cells)
    failed = compare(ref, _rerun(tmp_path / "failed", {("finetune", 13): None}))
    (cell,) = failed.cells
    assert (cell.rerun, cell.verdict) == (None, DIFFERENT)


def test_within_std_verdict(tmp_path):
    ref = _reference(tmp_path / "ref")
    comp = compare(ref, _rerun(tmp_path / "new", {("finetune", 13): 0.81}))
    assert comp.verdict.startswith("reproduced within seed std: 1 of 1 cells")


def test_cli_compare_exit_codes(tmp_path, capsys):
    ref = _reference(tmp_path / "ref")
    same = _rerun(tmp_path / "same", {("finetune", 13): 0.80})
    assert main(["compare", str(ref), str(same)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("reproduced exactly: 1 of 1")
    worse = _rerun(tmp_path / "worse", {("finetune", 13): 0.5})
    assert main(["compare", str(ref), str(worse)]) == 1
    assert main(["compare", str(ref), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunebench: error: rerun folder ") and err.count("\n") == 1


@pytest.mark.parametrize("folder", ["reproduce", ".hidden"])
def test_the_report_leaves_out_reruns_under_reproduce(tmp_path, folder):
    root = write_all(tmp_path, [record("finetune", "SST-2", 13, 0.8)])
    write_all(tmp_path / folder / "test-20260101T000000Z", [record("finetune", "SST-2", 13, 0.5)])
    assert len(load_records(root).records) == 1  # else: two records for one cell and seed
