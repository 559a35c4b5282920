"""The declarative task record: what a task is, not how it is read.

A task is data: its files in LM-BFF's ``data/original/`` layout, which columns hold the
text and the label, the labels in a fixed order, its metrics, its maximum length, and its
prompts. Readers (``tasks.readers``) and the sampler (``tasks.splits``) interpret it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# A column is named by its header (GLUE .tsv files) or by its position (CoLA, .csv files).
Column = str | int


@dataclass(frozen=True)
class Prompt:
    """A template and its verbalizer.

    ``template`` is text with the slots ``{s1}``, ``{s2}`` and ``{mask}``. A label word fills
    ``{mask}`` with a leading space where it follows text (RoBERTa/GPT-style tokenizers read
    " great", not "great"), so ``"{s1} It was{mask}."`` renders as "... It was great.".
    On a causal backbone the text after ``{mask}`` is dropped and the label word is the next
    token. ``s1``/``s2`` name LM-BFF's sentence transforms: ``drop_last`` removes the final
    character (the sentence's punctuation), ``lower_first`` lower-cases the first letter.
    """

    template: str
    # One label word per label, in the task's label order; with M {mask} slots (PTR's
    # sub-prompts), one tuple of M words per label: the label is their conjunction.
    words: tuple[str | tuple[str, ...], ...]
    s1: str = "as_is"
    s2: str = "as_is"
    note: str = ""

    def __post_init__(self) -> None:
        if "{mask}" not in self.template:
            raise ValueError(f"template {self.template!r} has no {{mask}} slot")
        slots = self.template.count("{mask}")
        if slots > 1 and any(not isinstance(w, tuple) or len(w) != slots for w in self.words):
            raise ValueError(
                f"template {self.template!r} has {slots} {{mask}} slots: each label needs a "
                f"tuple of {slots} words (one per slot), got {self.words!r}"
            )
        for t in (self.s1, self.s2):
            if t not in SENTENCE_TRANSFORMS:
                raise ValueError(
                    f"unknown sentence transform {t!r}; choose {list(SENTENCE_TRANSFORMS)}"
                )


def _drop_last(s: str) -> str:
    return s[:-1]


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:]


SENTENCE_TRANSFORMS = {"as_is": lambda s: s, "drop_last": _drop_last, "lower_first": _lower_first}


@dataclass(frozen=True)
class Files:
    """Where a task's rows live, relative to ``<data root>/<task dir>/``.

    ``test`` maps a test-set name to its file: GLUE tasks use the GLUE dev set as the test
    set (their test labels are not public); MNLI has two (matched, mismatched).
    """

    train: str
    test: dict[str, str]
    header: bool = True  # GLUE .tsv files have a header line; CoLA and the .csv files do not


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face dataset (``datasets.load_dataset(dataset, config)``); ``Files`` then
    names its splits instead of files."""

    dataset: str
    config: str | None = None


@dataclass(frozen=True)
class Task:
    name: str  # the directory name in LM-BFF's layout, e.g. "SST-2", "sst-5"
    # "tsv" (GLUE style), "csv" (header-less label,sentence; with a header: named columns),
    # "jsonl" (one object per line), "hf" (a Hugging Face dataset, ``hub``)
    format: str
    files: Files
    text_a: Column
    label: Column
    labels: tuple[str, ...]  # the label values as they appear in the file, in a fixed order
    metrics: tuple[str, ...]  # the first is the task's primary metric
    prompt: Prompt  # LM-BFF's manual template and label words
    text_b: Column | None = None
    max_length: int = 128
    regression: bool = False  # STS-B: labels are score buckets, metrics read the score
    bucket_at: float | None = None  # STS-B: score < bucket_at -> label 0, else 1
    partial_files: Files | None = None  # rows of ../partial/<task>/, used only when asked
    prompts: dict[str, Prompt] = field(default_factory=dict)  # named variants ("causal", ...)
    description: str = ""
    empty_text: bool = False  # rows with empty text are kept (counted), not refused
    data_dir: Path | None = None  # a task file's own folder of rows; None: <data root>/<name>/
    hub: HubSource | None = None  # format "hf": the dataset the rows come from
    source: str = ""  # the task file it was read from

    @property
    def builtin(self) -> bool:
        """Declared by one of the package's own task files (``tasks/builtin/``)."""
        return Path(self.source).parent == Path(__file__).with_name("builtin")

    @property
    def is_pair(self) -> bool:
        return self.text_b is not None

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def prompt_variant(self, name: str = "default") -> Prompt:
        if name in ("default", "manual"):
            return self.prompt
        if name not in self.prompts:
            from bench.core.errors import unknown

            raise unknown(f"prompt of task {self.name}", name, ["default", *self.prompts])
        return self.prompts[name]


@dataclass(frozen=True)
class Example:
    """One row, parsed: texts, the label's index in ``Task.labels`` and, for STS-B, the score."""

    text_a: str
    label: int
    text_b: str | None = None
    score: float | None = None

    def to_json(self) -> dict:
        d = {"text_a": self.text_a, "text_b": self.text_b, "label": self.label}
        if self.score is not None:
            d["score"] = self.score
        return d
