"""LM-BFF's K-shot protocol, checked against its published split checksums."""

import hashlib
import json

import pytest

from bench.cli.app import main
from bench.core.errors import SplitError
from tasks import get_task
from tasks.splits import LMBFF_SEEDS, sample_split, shuffled_order

WHOLE = ["SST-2", "sst-5", "mr", "cr", "mpqa", "subj", "trec", "CoLA", "RTE", "MRPC", "STS-B"]


@pytest.mark.parametrize("task", WHOLE)
def test_k16_splits_match_lmbff_published_md5(task, data_root, lmbff_checksums):
    checked = 0
    for seed in LMBFF_SEEDS:
        split = sample_split(get_task(task), 16, seed, data_root)
        for name, md5 in split.md5s().items():
            assert md5 == lmbff_checksums[f"{task}/16-{seed}/{name}"], f"{task}/16-{seed}/{name}"
            checked += 1
    assert checked == 15  # train, dev and test for each of the 5 seeds


def test_cli_writes_lmbff_files_byte_for_byte(tmp_path, data_root, lmbff_checksums):
    rc = main(
        [
            "splits",
            "--task",
            "cr",
            "--task",
            "CoLA",
            "--k",
            "16",
            "--seed",
            "42",
            "--out",
            str(tmp_path),
            "--data-dir",
            str(data_root),
        ]
    )
    assert rc == 0
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "CoLA/16-42/dev.tsv",
        "CoLA/16-42/test.tsv",
        "CoLA/16-42/train.tsv",
        "cr/16-42/dev.csv",
        "cr/16-42/test.csv",
        "cr/16-42/train.csv",
    ]
    for p in files:
        rel = p.relative_to(tmp_path).as_posix()
        assert hashlib.md5(p.read_bytes()).hexdigest() == lmbff_checksums[rel], rel


def test_any_k_is_balanced_and_deterministic(data_root):
    task = get_task("trec")
    a = sample_split(task, 4, 7, data_root)
    b = sample_split(task, 4, 7, data_root)
    assert len(a.train) == len(a.dev) == 4 * 6
    assert sorted(e.label for e in a.train) == sorted(list(range(6)) * 4)
    assert a.fingerprint == b.fingerprint and a.train == b.train
    assert sample_split(task, 4, 8, data_root).fingerprint != a.fingerprint
    assert not set(map(id, a.train)) & set(map(id, a.dev))
    assert not {(e.text_a, e.label) for e in a.train} & {(e.text_a, e.label) for e in a.dev}


def test_train_and_dev_do_not_overlap_and_test_is_the_original_file(data_root):
    split = sample_split(get_task("RTE"), 16, 13, data_root)
    assert {e.text_a for e in split.train}.isdisjoint({e.text_a for e in split.dev})
    assert len(split.test["test"]) == 277


def test_k_larger_than_a_label_is_an_error_naming_counts(data_root):
    with pytest.raises(
        SplitError, match=r"K=1000 needs 2000 .*'entailment' has 1249 rows.*--allow-short"
    ):
        sample_split(get_task("RTE"), 1000, 13, data_root)


def test_allow_short_takes_what_there_is(data_root, tmp_path, capsys):
    split = sample_split(get_task("RTE"), 1000, 13, data_root, allow_short=True)
    assert split.short == {"entailment": 1249, "not_entailment": 1241}
    assert len(split.train) == 2000 and len(split.dev) == 249 + 241
    main(
        [
            "splits",
            "--task",
            "RTE",
            "--k",
            "1000",
            "--seed",
            "13",
            "--allow-short",
            "--out",
            str(tmp_path),
            "--data-dir",
            str(data_root),
        ]
    )
    assert "label 'entailment' had 1249 rows, got 1000 train + 249 dev" in capsys.readouterr().out


def test_stsb_is_balanced_on_the_score_bucket(data_root):
    split = sample_split(get_task("STS-B"), 8, 13, data_root)
    for e in split.train + split.dev:
        assert e.label == (0 if e.score < 2.5 else 1)
    assert sorted(e.label for e in split.train) == [0] * 8 + [1] * 8


def test_jsonl_format_round_trips(tmp_path, data_root):
    rc = main(
        [
            "splits",
            "--task",
            "MRPC",
            "--k",
            "8",
            "--seed",
            "13",
            "--format",
            "jsonl",
            "--out",
            str(tmp_path),
            "--data-dir",
            str(data_root),
        ]
    )
    assert rc == 0
    folder = tmp_path / "MRPC" / "8-13"
    meta = json.loads((folder / "split.json").read_text())
    split = sample_split(get_task("MRPC"), 8, 13, data_root)
    assert meta["fingerprint"] == split.fingerprint
    assert meta["sizes"] == {"train": 16, "dev": 16, "test": 408}
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert rows == [e.to_json() for e in split.train]
    assert rows[0]["text_b"]


def test_partial_data_only_when_asked(data_root):
    task = get_task("MNLI")
    with pytest.raises(Exception, match="ask for it with --partial"):
        sample_split(task, 16, 13, data_root)
    if not (data_root.parent / "partial" / "MNLI").is_dir():
        pytest.skip("no partial data beside the data root")
    split = sample_split(task, 16, 13, data_root, partial=True)
    assert split.partial and set(split.test) == {"test_matched", "test_mismatched"}
    assert len(split.train) == 48


def test_cola_follows_lmbff_in_place_shuffle_quirk():
    # For a header-less GLUE file LM-BFF shuffles the same list for every seed in turn.
    assert shuffled_order(10, 100, in_place_chain=True) == shuffled_order(10, 100)
    chained = shuffled_order(10, 13, in_place_chain=True)
    assert chained != shuffled_order(10, 13)
    assert chained == [shuffled_order(10, 100)[i] for i in shuffled_order(10, 13)]
    assert shuffled_order(10, 5, in_place_chain=True) == shuffled_order(10, 5)
