"""Read a task's files in LM-BFF's ``data/original/`` layout.

Rows are kept in two forms: ``raw`` (exactly what LM-BFF's sampler holds: the file's lines
for .tsv, pandas' row lists for .csv, so splits can be written back byte for byte) and
parsed ``Example``s. Every malformed row is reported as ``file:line`` (and the column or
field): bytes that are not UTF-8 at their exact line and column, a wrong number of fields,
a label that is not one of the task's (labels are read and compared as text: a CSV label
``1.0`` is not ``1``), text that is empty, only whitespace or ``NaN`` (pandas reads an empty
or ``NA``-like field so), or holds a NUL byte. Tasks whose original data has empty texts
(``Task.empty_text``: LM-BFF's cr and mpqa) keep those rows, and each file's count is
reported once (``Parser.notes``).
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
    text_rows: list | None = None  # .csv: (line number, fields as text) per row of ``rows``


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
    _check_utf8(path, data)
    # LM-BFF reads with open(f, "r").readlines(): universal newlines, UTF-8.
    lines = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").readlines()
    n = 1 if header else 0
    return RawTable(path=path, header=lines[:n], rows=lines[n:])


def _read_csv(path: Path) -> RawTable:
    data = path.read_bytes()
    _check_utf8(path, data)
    text_rows = _csv_text_rows(path)
    if not text_rows:  # empty: no rows (a split refuses it, naming the file)
        return RawTable(path=path, header=[], rows=[], frame=pd.DataFrame(), text_rows=[])
    for line, fields in text_rows:
        if len(fields) != 2:
            raise DataError(
                f"{path}:{line}: {len(fields)} fields; expected 2 ('label,sentence', no header)"
            )
    try:
        frame = pd.read_csv(path, header=None)  # exactly as LM-BFF reads .csv tasks
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: malformed CSV ({e}); expected rows 'label,sentence'") from None
    if len(frame) != len(text_rows) or frame.shape[1] != 2:
        raise DataError(
            f"{path}: pandas reads {len(frame)} rows of {frame.shape[1]} fields, the csv module "
            f"{len(text_rows)} rows of 2; check the file's quotes (expected 'label,sentence')"
        )
    return RawTable(
        path=path, header=[], rows=frame.values.tolist(), frame=frame, text_rows=text_rows
    )


def _csv_text_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields as text) of each row, blank lines skipped (as pandas does)."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        start = 1
        try:
            for row in reader:
                if row:
                    out.append((start, row))
                start = reader.line_num + 1
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return out


def _check_utf8(path: Path, data: bytes) -> None:
    """Refuse bytes that are not UTF-8, at their exact line and column (byte in the line)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        raise DataError(
            f"{path}:{line}:{column}: bytes that are not UTF-8 ({e.reason}: "
            f"{data[e.start : e.end]!r}); re-encode the file as UTF-8"
        ) from None


class Parser:
    """Turns raw rows of one file into ``Example``s and group keys (the label as LM-BFF's
    sampler sees it), checking column counts and labels."""

    def __init__(self, task: Task, table: RawTable):
        self.task, self.table = task, table
        self.width = None
        self.notes: list[str] = []  # once per file: rows with empty text the task allows
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
            return self.table.text_rows[i][0]
        return i + 1 + len(self.table.header)

    def fields(self, i: int, row) -> list:
        if self.task.format == "csv" or self.table.columns is not None:
            return row
        if "\0" in row:
            raise DataError(
                f"{self.table.path}:{self.line_of(i)}:{row.index(chr(0)) + 1}: a NUL byte; "
                "remove it (a text file has none)"
            )
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
            key = self.table.text_rows[i][1][t.label] if self.table.text_rows else str(raw_label)
            if key not in t.labels:
                raise DataError(
                    f"{self.table.path}:{self.line_of(i)}: label {key!r} is not one of "
                    f"task {t.name}'s labels ({', '.join(t.labels)}; compared as text)"
                )
            label = t.labels.index(key)
        texts = [self._text(i, f, c) for c in (t.text_a, t.text_b) if c is not None]
        return Example(
            text_a=texts[0], text_b=texts[1] if len(texts) > 1 else None, label=label, score=score
        )

    def _text(self, i: int, fields: list, column: Column) -> str:
        value = fields[self.index[column]]
        text = _text(value)
        if self.table.text_rows:  # LM-BFF .csv: the field as written, for what pandas made NaN
            written = self.table.text_rows[i][1][self.index[column]]
            if "\0" in written:
                raise DataError(
                    f"{self.table.path}:{self.line_of(i)}: {self._field(column)} holds a NUL "
                    "byte; remove it (a text file has none)"
                )
        if not text.strip():
            self._empty += 1
            if not self.task.empty_text:
                shown = "NaN" if isinstance(value, float) else repr(value)
                raise DataError(
                    f"{self.table.path}:{self.line_of(i)}: {self._field(column)} is empty "
                    f"({shown}); every row of task {self.task.name} needs text there"
                )
        return text

    def _field(self, column: Column) -> str:
        named = f" ({column!r})" if isinstance(column, str) else ""
        return f"field {self.index[column] + 1}{named}"

    def examples(self, rows=None) -> list[Example]:
        rows = self.table.rows if rows is None else rows
        self._empty = 0
        out = [self.example(i, r) for i, r in enumerate(rows)]
        if self._empty:
            self.notes.append(
                f"{self.table.path}: {self._empty} row(s) with empty text, kept (task "
                f"{self.task.name}'s original data has them; LM-BFF keeps them)"
            )
        return out


def _text(value) -> str:
    # pandas reads an empty (or "NA"-like) field as NaN; LM-BFF writes it back as "".
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def read_examples(task: Task, split: str, root: Path, partial: bool = False) -> list[Example]:
    table = read_raw(task, split, root, partial)
    return Parser(task, table).examples()
