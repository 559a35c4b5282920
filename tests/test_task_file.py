"""Tasks as data: the built-in TOML files, a user's own task file end to end (tasks, splits,
run, sweep, report), clear errors on a malformed file, and the hub conversions (on in-memory
``datasets.Dataset``s: no network)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

import tasks
from bench.cli.app import main
from bench.core.errors import DataError
from tasks import RULES, TASKS, add_task_file, get_task
from tasks.catalog import BUILTIN_DIR, ORDER
from tasks.readers import data_status, read_examples
from tasks.splits import sample_split
from tasks.taskfile import TaskFileError, load_task_file


@pytest.fixture
def user_tasks(monkeypatch):
    """Whatever a test adds to the catalog is gone afterwards."""
    monkeypatch.delenv(tasks.TASKS_ENV, raising=False)
    before = (dict(TASKS), dict(tasks._BY_FOLDED), dict(RULES))
    yield
    for live, saved in zip((TASKS, tasks._BY_FOLDED, RULES), before):
        live.clear()
        live.update(saved)


def test_builtin_catalog_is_the_toml_files():
    files = sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))
    assert files == sorted(TASKS) and list(TASKS) == list(ORDER)
    for name in files:
        task, rules = load_task_file(BUILTIN_DIR / f"{name}.toml")
        assert task == get_task(name) and task.source.endswith(f"builtin/{name}.toml")
        assert rules == RULES.get(name)
    assert sorted(RULES) == sorted(
        ["SST-2", "GLUE-SST-2", "mr", "cr", "mpqa", "MNLI", "SNLI", "RTE", "QNLI", "MRPC", "QQP"]
    )


REVIEWS_TOML = """\
name = "my-reviews"
description = "a user's own sentiment task"
labels = ["neg", "pos"]
metrics = ["acc", "f1"]
max_length = 64

[data]
format = "csv"
dir = "rows"
train = "train.csv"
test = { test = "test.csv" }
text_a = "review"
label = "sentiment"

[prompt]
template = "{s1} It was{mask}."
words = ["terrible", "great"]

[prompts.causal]
template = "Review: {s1}\\nSentiment:{mask}"
words = ["negative", "positive"]
"""


def write_reviews(tmp_path: Path, toml: str = REVIEWS_TOML) -> Path:
    """A small CSV task: 24 train and 6 test rows per label, with quoted commas."""
    rng = random.Random(0)
    words = {"neg": ["dull", "awful", "boring"], "pos": ["lovely", "fun", "moving"]}
    rows = {"train": [], "test": []}
    for part, n in (("train", 24), ("test", 6)):
        for i in range(n):
            for label in ("neg", "pos"):
                rows[part].append(f'"{rng.choice(words[label])}, take {part}-{i}",{label}\n')
        rng.shuffle(rows[part])
    folder = tmp_path / "rows"
    folder.mkdir(parents=True, exist_ok=True)
    for part, lines in rows.items():
        (folder / f"{part}.csv").write_text("review,sentiment\n" + "".join(lines))
    path = tmp_path / "my_task.toml"
    path.write_text(toml)
    return path


def test_a_csv_task_file_lists_and_splits(tmp_path, user_tasks, capsys):
    path = write_reviews(tmp_path)
    assert main(["tasks", "--task-file", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("my-reviews "))
    assert " whole " in line and "acc/f1" in line and "terrible, great" in line
    assert f"task files: my-reviews ({path.resolve()})" in out
    out = tmp_path / "splits"
    argv = ["splits", "--task-file", str(path), "--task", "my-reviews", "--k", "4"]
    argv += ["--data-dir", str(tmp_path / "no-lmbff-data")]  # its own folder: no data root needed
    assert main([*argv, "--seed", "13", "--out", str(out)]) == 0
    train = (out / "my-reviews" / "4-13" / "train.csv").read_text().splitlines()
    assert train[0] == "review,sentiment" and len(train) == 9
    labels = [r.rsplit(",", 1)[1] for r in train[1:]]  # grouped by label, K=4 each
    assert sorted(labels) == ["neg"] * 4 + ["pos"] * 4 and len(set(labels[:4])) == 1
    assert len((out / "my-reviews" / "4-13" / "test.csv").read_text().splitlines()) == 13
    split = sample_split(get_task("my-reviews"), 4, 13, tmp_path)
    assert split.train[0].text_a.startswith(
        ("dull, ", "awful, ", "boring, ", "lovely, ", "fun, ", "moving, ")
    )
    assert os.environ[tasks.TASKS_ENV] == str(path.resolve())  # what sweep workers inherit


def test_a_csv_task_file_runs_a_cell_a_sweep_and_a_report(tmp_path, user_tasks, capsys, one_thread):
    path = write_reviews(tmp_path)
    record = tmp_path / "run.json"
    argv = ["run", "--task-file", str(path), "--task", "my-reviews", "--backbone", "tiny-roberta",
            "--method", "prompt-finetune", "--k", "4", "--set", "steps=2", "--set", "eval_every=1",
            "--out", str(record), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    rec = json.loads(record.read_text())
    assert rec["cell"]["task"] == "my-reviews" and rec["primary_metric"] == "acc"
    assert rec["config"]["prompt"]["template"] == "{s1} It was{mask}."
    assert set(rec["test"]["test"]) >= {"acc", "f1"}
    profile = tmp_path / "mine.toml"
    profile.write_text(
        'backbones = ["tiny-roberta"]\ntasks = ["my-reviews"]\nk = [4]\nseeds = [13]\n'
        "[search]\ntrials = 1\n[settings]\nsteps = 2\neval_every = 1\n"
        '[[methods]]\nmethod = "head-only"\n[[methods]]\nmethod = "zero-shot"\n'
    )
    results = tmp_path / "results"
    sweep = ["sweep", str(profile), "--task-file", str(path), "--results", str(results)]
    assert main([*sweep, "--threads", "1", "--no-progress", "--device", "cpu"]) == 0
    recs = sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json"))
    assert recs == [
        "mine/tiny-roberta/my-reviews/head-only/k4-seed13.json",
        "mine/tiny-roberta/my-reviews/zero-shot/k4-seed13.json",
    ]
    assert main(["report", "--results", str(results), "--task-file", str(path)]) == 0
    assert "my-reviews" in (results / "leaderboard.md").read_text()


def test_tasks_folder_from_the_environment(tmp_path, user_tasks, monkeypatch):
    write_reviews(tmp_path)
    monkeypatch.setenv(tasks.TASKS_ENV, str(tmp_path))
    assert [t.name for t in tasks.load_env_tasks()] == ["my-reviews"]
    assert data_status(get_task("MY-REVIEWS"), None) == "whole"  # its own folder, no data root
    clash = tmp_path / "other" / "sst2.toml"
    clash.parent.mkdir()
    clash.write_text(REVIEWS_TOML.replace('"my-reviews"', '"SST-2"'))
    with pytest.raises(
        TaskFileError,
        match=r"sst2.toml: key 'name': task 'SST-2' is already declared by .*builtin/SST-2.toml",
    ):
        add_task_file(clash)
    monkeypatch.setenv(tasks.TASKS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(
        TaskFileError, match=r"TUNEBENCH_TASKS names .*nowhere, which does not exist"
    ):
        tasks.load_env_tasks()


def test_a_jsonl_task_reads_fields_and_names_bad_lines(tmp_path, user_tasks):
    toml = REVIEWS_TOML.replace('format = "csv"', 'format = "jsonl"').replace(".csv", ".jsonl")
    (tmp_path / "rows").mkdir()
    rows = [{"review": f"r{i}", "sentiment": "pos" if i % 2 else "neg", "id": i} for i in range(8)]
    (tmp_path / "rows" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "rows" / "test.jsonl").write_text(
        '{"review": "x", "sentiment": "pos", "id": 1}\n\n[1]\n'
    )
    (tmp_path / "t.toml").write_text(toml)
    task = add_task_file(tmp_path / "t.toml")
    train = read_examples(task, "train", tmp_path)
    assert [(e.text_a, e.label) for e in train[:2]] == [("r0", 0), ("r1", 1)]
    with pytest.raises(
        DataError, match=r"rows/test.jsonl:3: a list; expected a JSON object per line"
    ):
        read_examples(task, "test", tmp_path)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('name = "my-reviews"\n', "", r"key 'name': expected a string \(it is required\)"),
        (
            'labels = ["neg", "pos"]',
            'labels = "neg"',
            r"key 'labels': expected a list of the label values",
        ),
        (
            'metrics = ["acc", "f1"]',
            'metrics = ["accuracy"]',
            r"key 'metrics': expected a non-empty list of metric names from \['acc', 'f1', 'mcc', 'pearson', 'spearman'\], got \['accuracy'\]",
        ),
        (
            "max_length = 64",
            "max_length = 0",
            r"key 'max_length': expected a positive integer, got 0",
        ),
        (
            'format = "csv"',
            'format = "xlsx"',
            r"key 'data.format': expected one of tsv, csv, jsonl, hf, got 'xlsx'",
        ),
        ('text_a = "review"\n', "", r"key 'data.text_a': expected a string \(it is required\)"),
        (
            'test = { test = "test.csv" }',
            'test = "test.csv"',
            r"key 'data.test': expected a table of test-set name = file",
        ),
        (
            'words = ["terrible", "great"]',
            'words = ["terrible"]',
            r"key 'prompt.words': expected 2 entries, one per label",
        ),
        (
            'template = "{s1} It was{mask}."',
            'template = "{s1} It was."',
            r"key 'prompt.template': expected text with a \{mask\} slot",
        ),
        (
            "max_length = 64",
            "max_length = 64\nmax_len = 3",
            r"unknown key 'max_len'; expected one of: ",
        ),
        (
            "[prompt]",
            '[prompt]\ns1 = "upper"',
            r"key 'prompt.s1': expected one of as_is, drop_last, lower_first, got 'upper'",
        ),
        ('name = "my-reviews"', 'name = "my-reviews', r"not valid TOML"),
    ],
)
def test_malformed_task_file_names_file_and_key(tmp_path, user_tasks, capsys, old, new, message):
    assert old in REVIEWS_TOML
    path = tmp_path / "bad.toml"
    path.write_text(REVIEWS_TOML.replace(old, new, 1))
    with pytest.raises(TaskFileError, match=message) as e:
        load_task_file(path)
    assert str(e.value).startswith(f"{path}: ")
    assert main(["tasks", "--task-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tunebench: error: {path}: ") and err.count("\n") == 1


def test_ptr_rules_in_a_task_file(tmp_path, user_tasks):
    toml = REVIEWS_TOML + (
        '\n[ptr]\nsub_prompts = ["how it was", "sentiment"]\n[ptr.prompts.default]\n'
        'template = "{s1} It was{mask}. The review is{mask}."\n'
        'words = [["terrible", "negative"], ["great", "positive"]]\n'
    )
    path = write_reviews(tmp_path, toml)
    task = add_task_file(path)
    assert RULES[task.name].sub_prompts == ("how it was", "sentiment")
    (tmp_path / "bad.toml").write_text(
        toml.replace('["great", "positive"]]', '["great"]]').replace("my-reviews", "other")
    )
    with pytest.raises(
        TaskFileError,
        match=r"key 'ptr.prompts.default.words': expected per label a list of 2 words",
    ):
        load_task_file(tmp_path / "bad.toml")


# --- the hub (in-memory datasets: no network) ------------------------------------------


@pytest.fixture
def datasets():
    return pytest.importorskip("datasets")  # the hub's library (the `hf` and `dev` extras)


def _rte_dataset(datasets, path: Path):
    """GLUE's RTE rows as the hub holds them (text columns, a class label, idx)."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    cols = [line.split("\t") for line in lines]
    names = ["entailment", "not_entailment"]
    return datasets.Dataset.from_dict(
        {
            "sentence1": [c[1] for c in cols],
            "sentence2": [c[2] for c in cols],
            "label": [names.index(c[3]) for c in cols],
            "idx": [int(c[0]) for c in cols],
        },
        features=datasets.Features(
            {
                "sentence1": datasets.Value("string"),
                "sentence2": datasets.Value("string"),
                "label": datasets.ClassLabel(names=names),
                "idx": datasets.Value("int32"),
            }
        ),
    )


def test_hub_source_writes_glue_rte_byte_for_byte_and_verifies(
    datasets, data_root, tmp_path, monkeypatch, capsys
):
    from tasks import hub

    loaded = {
        "train": _rte_dataset(datasets, data_root / "RTE" / "train.tsv"),
        "validation": _rte_dataset(datasets, data_root / "RTE" / "dev.tsv"),
    }
    calls = []

    def fake_load(name, config, split):
        calls.append((name, config, split))
        return loaded[split]

    monkeypatch.setattr(hub, "_load_dataset", lambda: fake_load)
    monkeypatch.setattr(hub, "HUB_TASKS", (hub.HUB_BY_TASK["RTE"],))
    dest = tmp_path / "original"
    assert main(["data", "fetch", "--source", "hf", "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert calls == [("nyu-mll/glue", "rte", "train"), ("nyu-mll/glue", "rte", "validation")]
    for name in ("train.tsv", "dev.tsv"):  # RTE's GLUE file has exactly the hub's columns
        assert (dest / "RTE" / name).read_bytes() == (data_root / "RTE" / name).read_bytes()
    row = next(line.split() for line in out.splitlines() if line.startswith("RTE "))
    assert row[2:4] == ["2/0/0", "15/0/0"]
    assert "bytes differ from LM-BFF's where the files do" in out and "MNLI: no parse" in out


def test_hub_conversion_of_snli_drops_unlabelled_rows_and_reads_back(datasets, tmp_path):
    from tasks.hub import HUB_BY_TASK, tsv_bytes

    names = ["entailment", "neutral", "contradiction"]
    ds = datasets.Dataset.from_dict(
        {"premise": ["A man\tsits.", "A dog runs.", "Kids play."], "hypothesis": ["He sits.", "?", "Nobody\nplays."],
         "label": [0, -1, 2]},
        features=datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=names)}),
    )  # fmt: skip
    data, dropped = tsv_bytes(HUB_BY_TASK["SNLI"], ds)
    assert dropped == 1
    assert data.decode().splitlines() == [
        "index\tsentence1\tsentence2\tgold_label",
        "0\tA man sits.\tHe sits.\tentailment",
        "2\tKids play.\tNobody plays.\tcontradiction",
    ]
    (tmp_path / "SNLI").mkdir()
    (tmp_path / "SNLI" / "train.tsv").write_bytes(data)
    examples = read_examples(get_task("SNLI"), "train", tmp_path)
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ("A man sits.", "He sits.", 1),  # SNLI's label order: contradiction, entailment, neutral
        ("Kids play.", "Nobody plays.", 0),
    ]


def test_a_hub_task_file_reads_class_label_names(datasets, tmp_path, user_tasks, monkeypatch):
    toml = (
        'name = "hub-sentiment"\nlabels = ["negative", "positive"]\n'
        '[data]\nformat = "hf"\ndataset = "someone/reviews"\ntrain = "train"\n'
        'test = { test = "test" }\ntext_a = "text"\nlabel = "label"\n'
        '[prompt]\ntemplate = "{s1} It was{mask}."\nwords = ["terrible", "great"]\n'
    )
    (tmp_path / "hub.toml").write_text(toml)
    ds = datasets.Dataset.from_dict(
        {"text": ["bad", "good", "unknown"], "label": [0, 1, -1]},
        features=datasets.Features(
            {
                "text": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["negative", "positive"]),
            }
        ),
    )
    seen = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: seen.append((a, k)) or ds)
    task = add_task_file(tmp_path / "hub.toml")
    assert data_status(task, None) == "hub"
    examples = read_examples(task, "train", Path("/nonexistent"))
    assert [(e.text_a, e.label) for e in examples] == [("bad", 0), ("good", 1)]
    assert seen == [(("someone/reviews", None), {"split": "train"})]

    def offline(*a, **k):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        DataError,
        match=r"cannot load split 'train' of the Hugging Face dataset someone/reviews \(ConnectionError: no route to host\)",
    ):
        read_examples(task, "train", Path("/nonexistent"))
