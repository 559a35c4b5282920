"""Read a task's files in LM-BFF's ``data/original/`` layout.

Rows are kept in two forms: ``raw`` (exactly what LM-BFF's sampler holds: the file's lines
for .tsv, pandas' row lists for .csv, so splits can be written back byte for byte) and
parsed ``Example``s. Every malformed row is reported with its file and line.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.core.errors import DataError
from tasks.base import Column, Example, Files, Task

DATA_ENV = "TUNEBENCH_DATA"
PARTIAL_ENV = "TUNEBENCH_PARTIAL_DATA"
HOW_TO_SET = (
    f"point --data-dir or ${DATA_ENV} at a folder in LM-BFF's data/original/ layout "
    "(one sub-folder per task, e.g. SST-2/train.tsv)"
)


def data_root(explicit: str | os.PathLike | None = None, *, tasks: tuple = ()) -> Path:
    """The data root: ``explicit`` (``--data-dir``), else ``$TUNEBENCH_DATA``, else ./data/original.
    It need not exist when every one of ``tasks`` reads its own folder or a hub dataset."""
    chosen = explicit or os.environ.get(DATA_ENV) or "data/original"
    root = Path(chosen).expanduser()
    own = tasks and all(t.data_dir is not None or t.hub is not None for t in tasks)
    if not root.is_dir() and not own:
        raise DataError(f"data root {root} does not exist; {HOW_TO_SET}")
    return root


def partial_root(root: Path) -> Path:
    """Where incomplete material lives: ``$TUNEBENCH_PARTIAL_DATA``, else ``<root>/../partial``."""
    return Path(os.environ.get(PARTIAL_ENV) or root.parent / "partial")


def task_files(task: Task, partial: bool) -> Files:
    if partial:
        if task.partial_files is None:
            raise DataError(
                f"task {task.name} has no partial data layout; its data is whole or missing"
            )
        return task.partial_files
    return task.files


def task_dir(task: Task, root: Path, partial: bool = False) -> Path:
    if task.data_dir is not None and not partial:  # a task file's own folder
        return task.data_dir
    return (partial_root(root) if partial else root) / task.name


def data_status(task: Task, root: Path | None) -> str:
    """'whole' when every file of the task is under the root, 'partial' when only the
    partial sample is, else 'missing' ('hub' for a Hugging Face dataset: read when used)."""
    if task.hub is not None:
        return "hub"
    if root is not None or task.data_dir is not None:
        if all((task_dir(task, root) / f).is_file() for f in _all_files(task.files)):
            return "whole"
    if root is not None:
        if task.partial_files and all(
            (task_dir(task, root, True) / f).is_file() for f in _all_files(task.partial_files)
        ):
            return "partial"
    return "missing"


def _all_files(files: Files) -> list[str]:
    return [files.train, *files.test.values()]


@dataclass
class RawTable:
    """A file's rows as LM-BFF's ``generate_k_shot_data.py`` holds them."""

    path: Path
    header: list[str]  # the header line(s), raw (.tsv only)
    rows: list  # .tsv: raw lines with their newline; .csv: [label, text] lists from pandas
    frame: pd.DataFrame | None = None  # .csv: the frame itself (LM-BFF writes test.csv from it)
    # Task files' named-column tables (tasks/tables.py): the column names, and each row's line
    columns: list[str] | None = None
    lines: list[int] | None = None


def read_raw(task: Task, split: str, root: Path, partial: bool = False) -> RawTable:
    """Read ``split`` ("train" or a test name such as "test", "test_matched")."""
    files = task_files(task, partial)
    name = files.train if split == "train" else files.test.get(split)
    if name is None:
        raise DataError(
            f"task {task.name} has no split {split!r}; it has train, {', '.join(files.test)}"
        )
    if task.format in ("jsonl", "hf") or (task.format == "csv" and files.header):
        from tasks.tables import read_table  # a task file's named columns

        t = read_table(task, name, task_dir(task, root, partial) if task.hub is None else None)
        return RawTable(path=t.path, header=[], rows=t.rows, columns=t.columns, lines=t.lines)
    path = task_dir(task, root, partial) / name
    if not path.is_file():
        hint = ""
        if not partial and task.partial_files and data_status(task, root) == "partial":
            hint = (
                f" (a partial sample exists under {partial_root(root)}; ask for it with --partial)"
            )
        raise DataError(
            f"task {task.name}: expected data file {path} is missing{hint}; {HOW_TO_SET}"
        )
    if task.format == "csv":
        return _read_csv(path)
    return _read_tsv(path, files.header)


def _read_tsv(path: Path, header: bool) -> RawTable:
    data = path.read_bytes()
    try:
        # LM-BFF reads with open(f, "r").readlines(): universal newlines, UTF-8.
        lines = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").readlines()
    except UnicodeDecodeError as e:
        raise DataError(_decode_message(path, data, e)) from None
    n = 1 if header else 0
    return RawTable(path=path, header=lines[:n], rows=lines[n:])


def _read_csv(path: Path) -> RawTable:
    try:
        frame = pd.read_csv(path, header=None)  # exactly as LM-BFF reads .csv tasks
    except UnicodeDecodeError as e:
        raise DataError(_decode_message(path, path.read_bytes(), e)) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: malformed CSV ({e}); expected rows 'label,sentence'") from None
    if frame.shape[1] != 2:
        line = _csv_line_with_width(path, frame.shape[1])
        raise DataError(
            f"{path}:{line}: {frame.shape[1]} columns; expected 2 ('label,sentence', no header)"
        )
    return RawTable(path=path, header=[], rows=frame.values.tolist(), frame=frame)


def _decode_message(path: Path, data: bytes, e: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, e.start) + 1
    return f"{path}:{line}: bytes that are not UTF-8 ({e.reason} at byte {e.start}); re-encode the file as UTF-8"


def _csv_line_with_width(path: Path, width: int) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        for row in reader:
            if len(row) == width:
                return reader.line_num
    return 1


def _csv_line_of_row(path: Path, index: int) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        for i, _ in enumerate(reader):
            if i == index:
                return reader.line_num
    return index + 1


class Parser:
    """Turns raw rows of one file into ``Example``s and group keys (the label as LM-BFF's
    sampler sees it), checking column counts and labels."""

    def __init__(self, task: Task, table: RawTable):
        self.task, self.table = task, table
        self.width = None
        if task.format == "tsv" and table.header:
            names = table.header[0].rstrip("\r\n").lstrip("\ufeff").split("\t")
            self.width = len(names)
            self.index = {c: self._resolve(c, names) for c in self._columns()}
        elif table.columns is not None:  # a task file's named-column table
            self.index = {c: self._resolve(c, table.columns) for c in self._columns()}
        else:
            self.index = {c: c for c in self._columns()}

    def _columns(self) -> list[Column]:
        t = self.task
        return [c for c in (t.text_a, t.text_b, t.label) if c is not None]

    def _resolve(self, column: Column, names: list[str]) -> int:
        if isinstance(column, int):
            return column
        if column not in names:
            raise DataError(
                f"{self.table.path}:1: header has no column {column!r} (columns: {', '.join(names)})"
            )
        return names.index(column)

    def line_of(self, i: int) -> int:
        if self.table.lines is not None:
            return self.table.lines[i]
        if self.task.format == "csv":
            return _csv_line_of_row(self.table.path, i)
        return i + 1 + len(self.table.header)

    def fields(self, i: int, row) -> list:
        if self.task.format == "csv" or self.table.columns is not None:
            return row
        fields = row.rstrip("\r\n").split("\t")
        need = max(self.index.values()) + 1
        if (self.width is not None and len(fields) != self.width) or len(fields) < need:
            expected = self.width if self.width is not None else f"at least {need}"
            raise DataError(
                f"{self.table.path}:{self.line_of(i)}: {len(fields)} tab-separated columns; expected {expected}"
            )
        return fields

    def example(self, i: int, row) -> Example:
        f = self.fields(i, row)
        t = self.task
        raw_label = f[self.index[t.label]]
        score = None
        if t.regression:
            try:
                score = float(raw_label)
            except ValueError:
                raise DataError(
                    f"{self.table.path}:{self.line_of(i)}: score {raw_label!r} is not a number"
                ) from None
            label = 0 if score < t.bucket_at else 1
        else:
            key = str(raw_label)
            if key not in t.labels:
                raise DataError(
                    f"{self.table.path}:{self.line_of(i)}: label {raw_label!r} is not one of "
                    f"task {t.name}'s labels ({', '.join(t.labels)})"
                )
            label = t.labels.index(key)
        text_b = _text(f[self.index[t.text_b]]) if t.text_b is not None else None
        return Example(
            text_a=_text(f[self.index[t.text_a]]), text_b=text_b, label=label, score=score
        )

    def examples(self, rows=None) -> list[Example]:
        rows = self.table.rows if rows is None else rows
        return [self.example(i, r) for i, r in enumerate(rows)]


def _text(value) -> str:
    # pandas reads an empty (or "NA"-like) field as NaN; LM-BFF writes it back as "".
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def read_examples(task: Task, split: str, root: Path, partial: bool = False) -> list[Example]:
    table = read_raw(task, split, root, partial)
    return Parser(task, table).examples()
