"""Rows of a task file's own data, read by column name: a CSV with a header, JSON Lines, or a
Hugging Face dataset (``datasets``). GLUE-style ``.tsv`` files with a header and LM-BFF's
header-less ``.csv`` files are read by ``tasks.readers`` itself.

Every table comes back as a ``Table`` (``tasks.readers`` wraps it in a ``RawTable``): rows
as lists of strings in ``columns`` order, each row's line (file) or row number (dataset) for
error messages. A split of such a task is written as CSV files with a header
(``split_files``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import DataError
from tasks.base import Task


@dataclass
class Table:
    """Rows as lists of strings in ``columns`` order; ``lines``: each row's line (or number)."""

    path: Path
    columns: list[str]
    rows: list[list[str]]
    lines: list[int]


def read_table(task: Task, name: str, folder: Path | None) -> Table:
    """The table ``name`` (a file in ``folder``, or a split of ``task.hub``'s dataset)."""
    if task.format == "hf":
        return read_hub_split(task, name)
    path = folder / name
    if not path.is_file():
        raise DataError(
            f"task {task.name}: data file {path} is missing; fix 'data.dir' or the file names "
            f"in its task file {task.source or '(built-in)'}"
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}:{line}: bytes that are not UTF-8 ({e.reason}); re-encode the file as UTF-8"
        ) from None
    table = _read_jsonl(path, text) if task.format == "jsonl" else _read_csv(path, text)
    if not table.rows:
        raise DataError(f"{path}: no rows; a task's {name} file needs at least one")
    return table


def _read_csv(path: Path, text: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise DataError(f"{path}:1: empty; expected a header line naming the columns")
    rows, lines = [], []
    for row in reader:
        if not row:
            continue  # a blank line
        if len(row) != len(header):
            raise DataError(
                f"{path}:{reader.line_num}: {len(row)} comma-separated columns; expected "
                f"{len(header)} (header: {', '.join(header)})"
            )
        rows.append(row)
        lines.append(reader.line_num)
    return Table(path, header, rows, lines)


def _read_jsonl(path: Path, text: str) -> Table:
    columns: list[str] | None = None
    rows, lines = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}:{n}: not JSON ({e.msg}); expected one object per line"
            ) from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{n}: a {type(obj).__name__}; expected a JSON object per line")
        if columns is None:
            columns = list(obj)
        missing = [c for c in columns if c not in obj]
        if missing:
            raise DataError(f"{path}:{n}: no field {missing[0]!r} (the first row has {columns})")
        rows.append([_cell(obj[c]) for c in columns])
        lines.append(n)
    return Table(path, columns or [], rows, lines)


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def read_hub_split(task: Task, split: str) -> Table:
    """One split of a Hugging Face dataset, read with ``datasets`` (cached by it on disk)."""
    hub = task.hub
    where = f"{hub.dataset}" + (f" ({hub.config})" if hub.config else "")
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"task {task.name} reads the Hugging Face dataset {where}, which needs the "
            "`datasets` package: pip install datasets"
        ) from None
    try:
        ds = datasets.load_dataset(hub.dataset, hub.config, split=split)
    except Exception as e:  # network, a wrong name or split: datasets raises many kinds
        raise DataError(
            f"task {task.name}: cannot load split {split!r} of the Hugging Face dataset {where} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); check "
            f"'data.dataset', 'data.config' and the split names in {task.source}, and the network"
        ) from None
    return dataset_table(ds, f"hf:{hub.dataset}/{hub.config or ''}/{split}", task.label)


def dataset_table(ds, name: str, label_column=None) -> Table:
    """A ``datasets.Dataset`` as a table: class-label columns read as their names, rows whose
    label is -1 (no gold label, the hub's convention) left out."""
    from datasets import ClassLabel

    columns = list(ds.column_names)
    names = {c: f for c, f in ds.features.items() if isinstance(f, ClassLabel)}
    rows, lines = [], []
    for i, row in enumerate(ds):
        if label_column in names and row[label_column] == -1:
            continue
        rows.append(
            [
                names[c].int2str(row[c]) if c in names and row[c] >= 0 else _cell(row[c])
                for c in columns
            ]
        )
        lines.append(i + 1)
    return Table(Path(name), columns, rows, lines)


def split_files(train, tests: dict, train_idx, dev_idx) -> dict:
    """A split of a named-column task as CSV files with a header (the bytes its fingerprint
    hashes): ``train.csv``, ``dev.csv`` and ``<test name>.csv``."""
    files = {f"{name}.csv": _csv_bytes(t.columns, t.rows) for name, t in tests.items()}
    files["train.csv"] = _csv_bytes(train.columns, [train.rows[i] for i in train_idx])
    files["dev.csv"] = _csv_bytes(train.columns, [train.rows[i] for i in dev_idx])
    return files


def _csv_bytes(columns: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")
