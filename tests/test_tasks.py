"""Task records, their readers on the real data, and clear errors on bad input."""

import pytest

from bench.cli.app import main
from bench.core.errors import DataError, UnknownNameError
from tasks import TASKS, get_task
from tasks.readers import data_root, data_status, read_examples

# Row counts of the real files (../shared/data/README.md).
ROWS = {
    "SST-2": (6920, 872),
    "sst-5": (8544, 2210),
    "mr": (8662, 2000),
    "cr": (1775, 2000),
    "mpqa": (8606, 2000),
    "subj": (8000, 2000),
    "trec": (5452, 500),
    "CoLA": (8551, 1043),
    "RTE": (2490, 277),
    "MRPC": (3668, 408),
    "STS-B": (5749, 1500),
    "GLUE-SST-2": (67349, 872),
}

LMBFF_WORDS = {
    "SST-2": ("terrible", "great"),
    "sst-5": ("terrible", "bad", "okay", "good", "great"),
    "mr": ("terrible", "great"),
    "cr": ("terrible", "great"),
    "mpqa": ("terrible", "great"),
    "subj": ("subjective", "objective"),
    "trec": ("Description", "Entity", "Expression", "Human", "Location", "Number"),
    "CoLA": ("incorrect", "correct"),
    "MNLI": ("No", "Yes", "Maybe"),
    "SNLI": ("No", "Yes", "Maybe"),
    "QNLI": ("Yes", "No"),
    "RTE": ("Yes", "No"),
    "MRPC": ("No", "Yes"),
    "QQP": ("No", "Yes"),
    "STS-B": ("No", "Yes"),
}


def test_all_lmbff_tasks_and_glue_sst2_are_declared():
    assert set(TASKS) == set(LMBFF_WORDS) | {"GLUE-SST-2"}
    for name, words in LMBFF_WORDS.items():
        assert get_task(name).prompt.words == words
        assert len(words) == get_task(name).num_labels
    assert get_task("MNLI").max_length == get_task("RTE").max_length == 256
    assert get_task("sst-2").name == "SST-2"  # case-insensitive lookup
    assert get_task("CoLA").metrics == ("mcc",)
    assert get_task("MRPC").metrics == ("f1", "acc") and get_task("QQP").metrics == ("f1", "acc")
    assert get_task("STS-B").metrics == ("pearson", "spearman")


def test_nli_labels_map_to_lmbff_words():
    mnli = get_task("MNLI")
    assert dict(zip(mnli.labels, mnli.prompt.words)) == {
        "contradiction": "No",
        "entailment": "Yes",
        "neutral": "Maybe",
    }
    rte = get_task("RTE")
    assert dict(zip(rte.labels, rte.prompt.words)) == {"not_entailment": "No", "entailment": "Yes"}
    assert rte.prompt.s1 == "drop_last" and rte.prompt.s2 == "lower_first"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_real_files_parse_with_expected_row_counts(name, data_root):
    task = get_task(name)
    train = read_examples(task, "train", data_root)
    test = read_examples(task, "test", data_root)
    assert (len(train), len(test)) == ROWS[name]
    assert {e.label for e in train} == set(range(task.num_labels))
    assert all(isinstance(e.text_a, str) for e in train)
    assert all((e.text_b is not None) == task.is_pair for e in train[:50])
    assert data_status(task, data_root) == "whole"


def test_partial_tasks_report_partial(data_root):
    for name in ("MNLI", "SNLI", "QNLI", "QQP"):
        assert data_status(get_task(name), data_root) in ("partial", "missing")


def test_unknown_task_lists_choices():
    with pytest.raises(UnknownNameError, match="unknown task 'sst2'; choose one of: .*SST-2"):
        get_task("sst2")


def _root_with(tmp_path, task, files: dict[str, bytes]):
    folder = tmp_path / "original" / task
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return tmp_path / "original"


def test_missing_data_root_says_how_to_set_it(tmp_path):
    with pytest.raises(
        DataError, match=r"does-not-exist does not exist; point --data-dir or \$TUNEBENCH_DATA"
    ):
        data_root(tmp_path / "does-not-exist")


def test_missing_file_names_expected_path(tmp_path):
    root = _root_with(tmp_path, "RTE", {"train.tsv": b"index\tsentence1\tsentence2\tlabel\n"})
    with pytest.raises(DataError, match=r"RTE/dev.tsv is missing"):
        read_examples(get_task("RTE"), "test", root)


def test_wrong_column_count_names_file_and_line(tmp_path):
    body = b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tentailment\n"
    root = _root_with(tmp_path, "RTE", {"train.tsv": body})
    with pytest.raises(DataError, match=r"RTE/train.tsv:3: 3 tab-separated columns; expected 4"):
        read_examples(get_task("RTE"), "train", root)


def test_label_outside_task_labels_names_file_and_line(tmp_path):
    root = _root_with(tmp_path, "cr", {"train.csv": b"0,good\n1,bad\n7,what\n"})
    with pytest.raises(
        DataError, match=r"cr/train.csv:3: label '7' is not one of task cr's labels"
    ):
        read_examples(get_task("cr"), "train", root)


def test_undecodable_bytes_name_file_and_line(tmp_path):
    root = _root_with(
        tmp_path, "SST-2", {"train.tsv": b"sentence\tlabel\nfine\t1\nbad \xff\xfe\t0\n"}
    )
    with pytest.raises(DataError, match=r"SST-2/train.tsv:3:5: bytes that are not UTF-8"):
        read_examples(get_task("SST-2"), "train", root)


def test_csv_with_three_columns_is_rejected(tmp_path):
    root = _root_with(tmp_path, "mr", {"train.csv": b"0,a,b\n1,c,d\n"})
    with pytest.raises(DataError, match=r"mr/train.csv:1: 3 fields; expected 2"):
        read_examples(get_task("mr"), "train", root)


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["splits", "--task", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunebench: error: unknown task 'nope'; choose one of:")
    assert "Traceback" not in err


def test_cli_tasks_lists_data_status(data_root, capsys):
    assert main(["tasks", "--data-dir", str(data_root)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert " whole " in lines["SST-2"] and " partial " in lines["MNLI"]
    assert "{s1} It was{mask}." in lines["SST-2"]
