"""K-shot splits, drawn exactly as LM-BFF's ``tools/generate_k_shot_data.py`` draws them.

For each seed: ``np.random.seed(seed); np.random.shuffle(train_rows)`` over the original
training rows (data lines in file order, header excluded); group the shuffled rows by label,
groups ordered by each label's first appearance; train is the first K rows of each group,
dev rows K..2K of each group. The test set is the task's original test file (GLUE: its dev
set). ``lmbff_files`` renders the split as LM-BFF's ``data/k-shot/<task>/<K>-<seed>/`` holds
it, byte for byte; ``Split.fingerprint`` is the sha256 of those bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core.errors import SplitError
from bench.core.io import atomic_write_bytes
from tasks import Example, Task
from tasks.readers import Parser, RawTable, read_raw

LMBFF_SEEDS = (13, 21, 42, 87, 100)


@dataclass
class Split:
    task: Task
    k: int
    seed: int
    train: list[Example]
    dev: list[Example]
    test: dict[str, list[Example]]  # test-set name -> rows ("test", or MNLI's two)
    files: dict[str, bytes] = field(repr=False)  # LM-BFF file name -> bytes
    partial: bool = False
    short: dict[str, int] = field(default_factory=dict)  # label -> rows it had, when < 2K
    notes: list[str] = field(default_factory=list)  # per file: rows kept with empty text

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + self.files[name] + b"\0")
        return h.hexdigest()[:16]

    def md5s(self) -> dict[str, str]:
        return {name: hashlib.md5(data).hexdigest() for name, data in self.files.items()}


def sample_split(
    task: Task, k: int, seed: int, root: Path, *, partial: bool = False, allow_short: bool = False
) -> Split:
    """Draw the K-shot split of ``task`` for ``seed`` (LM-BFF's protocol, see module doc)."""
    if k < 1:
        raise SplitError(f"K must be at least 1 (got {k})")
    train = read_raw(task, "train", root, partial)
    if not train.rows:
        raise SplitError(
            f"task {task.name}: training file {train.path} has no rows (empty, or only a "
            "header); restore the file"
        )
    parser = Parser(task, train)
    examples = parser.examples()  # validates every row, with its line, before sampling

    order = shuffled_order(
        len(train.rows), seed, in_place_chain=task.format == "tsv" and not train.header
    )

    groups: dict[int, list[int]] = {}  # label -> row indices, in first-appearance order
    for i in order:
        groups.setdefault(examples[i].label, []).append(i)
    short = _check_sizes(task, k, groups, allow_short)
    train_idx = [i for g in groups.values() for i in g[:k]]
    dev_idx = [i for g in groups.values() for i in g[k : 2 * k]]
    if not dev_idx:
        raise SplitError(
            f"task {task.name}: K={k} leaves no dev rows (no label has more than {k} training "
            "rows); use a smaller K"
        )

    tests = {name: read_raw(task, name, root, partial) for name in task_files_test(task, partial)}
    parsers = {name: Parser(task, t) for name, t in tests.items()}
    test = {name: p.examples() for name, p in parsers.items()}
    for t in tests.values():
        if not t.rows:
            raise SplitError(
                f"task {task.name}: test file {t.path} has no rows (empty, or only a header); "
                "a split needs its test set: restore the file"
            )
    return Split(
        task=task,
        k=k,
        seed=seed,
        train=[examples[i] for i in train_idx],
        dev=[examples[i] for i in dev_idx],
        test=test,
        files=_lmbff_files(task, train, tests, train_idx, dev_idx),
        partial=partial,
        short=short,
        notes=parser.notes + [n for p in parsers.values() for n in p.notes],
    )


# LM-BFF's script runs its seeds in this order (its --seed default).
LMBFF_SEED_ORDER = (100, 13, 21, 42, 87)


def shuffled_order(n: int, seed: int, *, in_place_chain: bool = False) -> list[int]:
    """The row order LM-BFF's script leaves after shuffling ``n`` rows for ``seed``.

    The script seeds numpy's global generator and shuffles the rows; the permutation depends
    only on ``n``. A quirk matters for a header-less GLUE file (CoLA): there the script
    shuffles the loaded list itself, not a copy, so each seed shuffles what the seeds before it
    (in LMBFF_SEED_ORDER) left. LM-BFF's published CoLA splits carry that, so we do too for
    those seeds (any other seed is one shuffle of the file order, as ``--seed S`` alone gives).
    """
    chain = (seed,)
    if in_place_chain and seed in LMBFF_SEED_ORDER:
        chain = LMBFF_SEED_ORDER[: LMBFF_SEED_ORDER.index(seed) + 1]
    order = list(range(n))
    for s in chain:
        np.random.seed(s)
        np.random.shuffle(order)
    return order


def task_files_test(task: Task, partial: bool) -> list[str]:
    files = task.partial_files if partial else task.files
    return list(files.test)


def _check_sizes(task: Task, k: int, groups: dict[int, list[int]], allow_short: bool) -> dict:
    have = {task.labels[label]: len(rows) for label, rows in groups.items()}
    missing = [lab for i, lab in enumerate(task.labels) if i not in groups]
    if task.regression:  # STS-B's labels are the buckets
        missing = []
    short = {lab: n for lab, n in have.items() if n < 2 * k}
    if (short or missing) and not allow_short:
        detail = ", ".join(f"label {lab!r} has {n} rows" for lab, n in short.items())
        if missing:
            detail = ", ".join(filter(None, [detail, f"labels {missing} have none"]))
        raise SplitError(
            f"task {task.name}: K={k} needs {2 * k} training rows per label (K train + K dev) but "
            f"{detail}; use a smaller K or --allow-short to take what there is"
        )
    return short


def _lmbff_files(task: Task, train: RawTable, tests: dict[str, RawTable], train_idx, dev_idx):
    """The bytes LM-BFF's script writes for this split."""
    if train.columns is not None:  # a task file's named columns: CSV files with a header
        from tasks.tables import split_files

        return split_files(train, tests, train_idx, dev_idx)
    if task.format == "tsv":
        files = {
            f"{name}.tsv": "".join(t.header + t.rows).encode("utf-8") for name, t in tests.items()
        }
        # LM-BFF names MNLI's dev split dev_matched.tsv; the header precedes train and dev.
        dev_name = "dev_matched.tsv" if task.name == "MNLI" else "dev.tsv"
        files["train.tsv"] = "".join(train.header + [train.rows[i] for i in train_idx]).encode()
        files[dev_name] = "".join(train.header + [train.rows[i] for i in dev_idx]).encode()
        return files
    files = {"test.csv": _to_csv(tests["test"].frame)}
    files["train.csv"] = _to_csv(pd.DataFrame([train.rows[i] for i in train_idx]))
    files["dev.csv"] = _to_csv(pd.DataFrame([train.rows[i] for i in dev_idx]))
    return files


def _to_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(header=False, index=False, lineterminator="\n").encode("utf-8")


def write_lmbff(split: Split, out: Path) -> Path:
    """Write ``out/<task>/<K>-<seed>/`` with LM-BFF's file names and bytes."""
    target = out / split.task.name / f"{split.k}-{split.seed}"
    target.mkdir(parents=True, exist_ok=True)
    for name, data in split.files.items():
        atomic_write_bytes(target / name, data)
    return target


def write_jsonl(split: Split, out: Path) -> Path:
    """Write the harness's own form: one JSON example per line, plus ``split.json``."""
    target = out / split.task.name / f"{split.k}-{split.seed}"
    target.mkdir(parents=True, exist_ok=True)
    parts = {"train": split.train, "dev": split.dev, **split.test}
    for name, rows in parts.items():
        text = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rows)
        atomic_write_bytes(target / f"{name}.jsonl", text.encode("utf-8"))
    meta = {
        "task": split.task.name,
        "k": split.k,
        "seed": split.seed,
        "labels": list(split.task.labels),
        "fingerprint": split.fingerprint,
        "partial": split.partial,
        "short": split.short,
        "sizes": {name: len(rows) for name, rows in parts.items()},
        "lmbff_md5": split.md5s(),
    }
    atomic_write_bytes(target / "split.json", (json.dumps(meta, indent=2) + "\n").encode())
    return target
