"""A task as a TOML file: the format of the built-in tasks (``tasks/builtin/*.toml``) and of a
user's own (``--task-file FILE``, or a folder of them in ``$TUNEBENCH_TASKS``).

One file, one task. Top-level keys: ``name``, ``description``, ``labels`` (the label values as
the data holds them, in a fixed order), ``metrics`` (the first is primary), ``max_length``,
``regression``/``bucket_at`` (STS-B), ``empty_text`` (rows with empty text kept, e.g. cr); tables ``[data]`` (where rows come from, which columns
hold the texts and the label), ``[prompt]`` (template and label words), ``[prompts.NAME]``
(named variants) and ``[ptr]`` (PTR's sub-prompts and their compositions). The README's
"Your own task" section shows a whole file. Every key is checked; a wrong one is reported as
``FILE: key 'data.label': expected ..., got ...``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from bench.core.errors import DataError
from bench.core.metrics import METRICS
from tasks.base import SENTENCE_TRANSFORMS, Files, HubSource, Prompt, Task
from tasks.ptr_rules import Rules

FORMATS = ("tsv", "csv", "jsonl", "hf")
TOP_KEYS = {
    "name", "description", "labels", "metrics", "max_length", "regression", "bucket_at",
    "empty_text", "data", "prompt", "prompts", "ptr",
}  # fmt: skip
DATA_KEYS = {
    "format", "header", "dir", "train", "test", "text_a", "text_b", "label", "partial",
    "dataset", "config",
}  # fmt: skip
PROMPT_KEYS = {"template", "words", "s1", "s2", "note"}


class TaskFileError(DataError):
    """A task file that cannot be read as a task; the message names the file and the key."""


class _Reader:
    """Reads keys of one file's table, naming the file and the dotted key in every error."""

    def __init__(self, path: Path, table: dict, prefix: str = ""):
        self.path, self.table, self.prefix = path, table, prefix

    def fail(self, key: str, expected: str, got=None) -> TaskFileError:
        shown = "" if got is None else f", got {got!r}"
        return TaskFileError(f"{self.path}: key '{self.prefix}{key}': expected {expected}{shown}")

    def only(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise TaskFileError(
                    f"{self.path}: unknown key '{self.prefix}{key}'; "
                    f"expected one of: {', '.join(sorted(allowed))}"
                )

    def get(self, key: str, kind, expected: str, default=...):
        if key not in self.table:
            if default is ...:
                raise self.fail(key, f"{expected} (it is required)")
            return default
        value = self.table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, expected, value)
        return value

    def text(self, key: str, default=...) -> str:
        value = self.get(key, str, "a string", default)
        if default is ... and not value.strip():
            raise self.fail(key, "a non-empty string", value)
        return value

    def sub(self, key: str, default=...) -> _Reader | None:
        value = self.get(key, dict, "a table", default)
        return None if value is None else _Reader(self.path, value, f"{self.prefix}{key}.")


def load_task_file(path: str | Path) -> tuple[Task, Rules | None]:
    """Read one task file: the task, and its PTR rules if it declares them."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskFileError(f"task file {path} does not exist; pass a .toml file (see README)")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TaskFileError(f"{path}: not valid TOML ({e}); see README, 'Your own task'") from None
    return parse_task(table, path)


def parse_task(table: dict, path: Path) -> tuple[Task, Rules | None]:
    r = _Reader(path, table)
    r.only(TOP_KEYS)
    name = r.text("name")
    if any(c in name for c in "/\\") or name.startswith("."):
        raise r.fail("name", "a name usable as a folder (no '/', '\\', leading '.')", name)
    labels = _labels(r)
    metrics = _metrics(r)
    regression = r.get("regression", bool, "true or false", False)
    bucket_at = r.get("bucket_at", (int, float), "a number", None)
    if regression and bucket_at is None:
        raise r.fail("bucket_at", "a number when regression = true (scores below it: label 0)")
    max_length = r.get("max_length", int, "a positive integer", 128)
    if max_length < 1:
        raise r.fail("max_length", "a positive integer", max_length)
    data = r.sub("data")
    fmt, files, columns, hub, data_dir = _data(data, path)
    prompt = _prompt(r.sub("prompt"), len(labels))
    variants = r.sub("prompts", None)
    prompts = {}
    if variants is not None:
        for key in variants.table:
            prompts[key] = _prompt(variants.sub(key), len(labels))
    task = Task(
        name=name,
        format=fmt,
        files=files,
        text_a=columns["text_a"],
        text_b=columns["text_b"],
        label=columns["label"],
        labels=labels,
        metrics=metrics,
        prompt=prompt,
        max_length=max_length,
        regression=regression,
        bucket_at=None if bucket_at is None else float(bucket_at),
        partial_files=files_partial(data, fmt),
        prompts=prompts,
        description=r.text("description", ""),
        empty_text=r.get("empty_text", bool, "true or false", False),
        data_dir=data_dir,
        hub=hub,
        source=str(path),
    )
    ptr = r.sub("ptr", None)
    return task, (None if ptr is None else _rules(ptr, len(labels)))


def _labels(r: _Reader) -> tuple[str, ...]:
    labels = r.get("labels", list, 'a list of the label values, in order (e.g. ["0", "1"])')
    if len(labels) < 2 or not all(isinstance(x, str | int) for x in labels):
        raise r.fail("labels", "a list of at least 2 strings or integers", labels)
    out = tuple(str(x) for x in labels)
    if len(set(out)) != len(out):
        raise r.fail("labels", "distinct values", labels)
    return out


def _metrics(r: _Reader) -> tuple[str, ...]:
    metrics = r.get("metrics", list, f"a list of metric names from {sorted(METRICS)}", ["acc"])
    if not metrics or any(m not in METRICS for m in metrics):
        raise r.fail("metrics", f"a non-empty list of metric names from {sorted(METRICS)}", metrics)
    return tuple(metrics)


def _column(d: _Reader, key: str, header: bool, default=...):
    if header:
        return d.text(key, default)
    value = d.get(key, int, "a 0-based column position (the file has no header)", default)
    if value is not None and value < 0:
        raise d.fail(key, "a 0-based column position", value)
    return value


def _files(d: _Reader, fmt: str, header: bool) -> Files:
    train = d.text("train")
    test = d.get("test", dict, 'a table of test-set name = file, e.g. { test = "dev.tsv" }')
    if not test or not all(isinstance(v, str) and v for v in test.values()):
        raise d.fail("test", "a non-empty table of test-set name = file (strings)", test)
    return Files(train=train, test=dict(test), header=header)


def _data(d: _Reader, path: Path):
    d.only(DATA_KEYS)
    fmt = d.get("format", str, f"one of {', '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise d.fail("format", f"one of {', '.join(FORMATS)}", fmt)
    header = d.get("header", bool, "true or false", True)
    if fmt in ("jsonl", "hf"):
        if "header" in d.table and not header:
            raise d.fail("header", f"true (a {fmt} row names its fields)", header)
        header = True
    files = _files(d, fmt, header)
    columns = {
        "text_a": _column(d, "text_a", header),
        "text_b": _column(d, "text_b", header, None),
        "label": _column(d, "label", header),
    }
    hub = None
    if fmt == "hf":
        hub = HubSource(dataset=d.text("dataset"), config=d.text("config", "") or None)
    elif "dataset" in d.table or "config" in d.table:
        raise d.fail("dataset", 'nothing unless format = "hf"', d.table.get("dataset"))
    data_dir = None
    if "dir" in d.table:
        data_dir = (path.parent / d.text("dir")).resolve()
    return fmt, files, columns, hub, data_dir


def files_partial(d: _Reader, fmt: str) -> Files | None:
    p = d.sub("partial", None)
    if p is None:
        return None
    p.only({"train", "test"})
    return _files(p, fmt, d.table.get("header", True))


def _words(r: _Reader, key: str, n_labels: int, slots: int):
    words = r.get(key, list, f"a list of {n_labels} label words, one per label")
    if len(words) != n_labels:
        raise r.fail(key, f"{n_labels} entries, one per label in 'labels' order", words)
    if slots == 1:
        if not all(isinstance(w, str) and w for w in words):
            raise r.fail(key, "a list of non-empty strings", words)
        return tuple(words)
    if not all(isinstance(w, list) and len(w) == slots for w in words):
        raise r.fail(key, f"per label a list of {slots} words (the template has {slots} {{mask}})")
    return tuple(tuple(w) for w in words)


def _prompt(r: _Reader, n_labels: int) -> Prompt:
    r.only(PROMPT_KEYS)
    template = r.text("template")
    if "{mask}" not in template:
        raise r.fail("template", "text with a {mask} slot (and {s1}, {s2} for the texts)", template)
    words = _words(r, "words", n_labels, template.count("{mask}"))
    transforms = {}
    for key in ("s1", "s2"):
        value = r.text(key, "as_is")
        if value not in SENTENCE_TRANSFORMS:
            raise r.fail(key, f"one of {', '.join(SENTENCE_TRANSFORMS)}", value)
        transforms[key] = value
    return Prompt(template, words, note=r.text("note", ""), **transforms)


def _rules(r: _Reader, n_labels: int) -> Rules:
    r.only({"sub_prompts", "prompts"})
    subs = r.get("sub_prompts", list, "a list of what each {mask} slot asks, in slot order")
    if len(subs) < 2 or not all(isinstance(s, str) and s for s in subs):
        raise r.fail("sub_prompts", "a list of at least 2 non-empty strings", subs)
    compositions = r.sub("prompts")
    if "default" not in compositions.table:
        raise compositions.fail(
            "default", "a table (template and words with one {mask} per sub-prompt)"
        )
    prompts = {}
    for key in compositions.table:
        prompt = _prompt(compositions.sub(key), n_labels)
        if prompt.template.count("{mask}") != len(subs):
            raise compositions.fail(
                f"{key}.template",
                f"{len(subs)} {{mask}} slots, one per sub-prompt",
                prompt.template,
            )
        prompts[key] = prompt
    return Rules(sub_prompts=tuple(subs), prompts=prompts)
