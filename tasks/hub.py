"""Build the GLUE tasks and SNLI from the Hugging Face hub (``datasets``) into LM-BFF's
``data/original/`` layout: ``tunebench data fetch --source hf``.

The hub's GLUE sets were converted from the GLUE files LM-BFF used (rows in the same order, as
far as known: not checked offline), but they are not the same bytes: it keeps only the text and label columns (GLUE's MNLI/SNLI files carry parses, genres
and annotator labels; MRPC/QQP their ids; STS-B its genre and source columns; CoLA its source
and original mark), so the files written here hold fewer columns. The K=16 splits then select
the same rows as LM-BFF's, but their files do not match LM-BFF's md5s (the verification says
so). LM-BFF's sentence-level SST-2 and its six non-GLUE tasks (sst-5, mr, cr, mpqa, subj,
trec) are not on the hub in LM-BFF's form: fetch ``datasets.tar`` for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import DataError
from bench.core.io import atomic_write_bytes


@dataclass(frozen=True)
class HubTask:
    task: str  # the folder in LM-BFF's layout
    dataset: str
    config: str | None
    splits: dict[str, str]  # file name -> hub split
    # Output columns: (header name, source). Source: a field of the dataset; "label:name" /
    # "label:int" (a class label as its name or number); "=TEXT" a constant.
    columns: tuple[tuple[str, str], ...]
    header: bool = True
    differs: str = ""  # what the written files lack against LM-BFF's


_NLI = (("index", "idx"), ("sentence1", "premise"), ("sentence2", "hypothesis"))
HUB_TASKS = (
    HubTask(
        "CoLA", "nyu-mll/glue", "cola", {"train.tsv": "train", "dev.tsv": "validation"},
        (("source", "=hf"), ("label", "label:int"), ("mark", "="), ("sentence", "sentence")),
        header=False, differs="column 1 (source) is 'hf', column 3 (original mark) empty",
    ),
    HubTask(
        "GLUE-SST-2", "nyu-mll/glue", "sst2", {"train.tsv": "train", "dev.tsv": "validation"},
        (("sentence", "sentence"), ("label", "label:int")),
        differs="no test.tsv (GLUE's unlabelled test set)",
    ),
    HubTask(
        "MRPC", "nyu-mll/glue", "mrpc", {"train.tsv": "train", "dev.tsv": "validation"},
        (("Quality", "label:int"), ("#1 ID", "idx"), ("#2 ID", "idx"), ("#1 String", "sentence1"),
         ("#2 String", "sentence2")),
        differs="the ids are the hub's row index, the header has no byte-order mark",
    ),
    HubTask(
        "QQP", "nyu-mll/glue", "qqp", {"train.tsv": "train", "dev.tsv": "validation"},
        (("id", "idx"), ("question1", "question1"), ("question2", "question2"),
         ("is_duplicate", "label:int")),
        differs="no qid1/qid2 columns",
    ),
    HubTask(
        "STS-B", "nyu-mll/glue", "stsb", {"train.tsv": "train", "dev.tsv": "validation"},
        (("index", "idx"), ("sentence1", "sentence1"), ("sentence2", "sentence2"),
         ("score", "label")),
        differs="no genre/filename/year/source columns; scores printed by Python",
    ),
    HubTask(
        "MNLI", "nyu-mll/glue", "mnli",
        {"train.tsv": "train", "dev_matched.tsv": "validation_matched",
         "dev_mismatched.tsv": "validation_mismatched"},
        (*_NLI, ("gold_label", "label:name")),
        differs="no parse, genre, pair-id or annotator-label columns",
    ),
    HubTask(
        "QNLI", "nyu-mll/glue", "qnli", {"train.tsv": "train", "dev.tsv": "validation"},
        (("index", "idx"), ("question", "question"), ("sentence", "sentence"),
         ("label", "label:name")),
    ),
    HubTask(
        "RTE", "nyu-mll/glue", "rte", {"train.tsv": "train", "dev.tsv": "validation"},
        (("index", "idx"), ("sentence1", "sentence1"), ("sentence2", "sentence2"),
         ("label", "label:name")),
    ),
    HubTask(
        "SNLI", "stanfordnlp/snli", None, {"train.tsv": "train", "dev.tsv": "validation"},
        (("index", "=row"), ("sentence1", "premise"), ("sentence2", "hypothesis"),
         ("gold_label", "label:name")),
        differs="no parse, caption-id or annotator-label columns; rows without a gold label "
        "(-1 on the hub, '-' in SNLI) left out, as in GLUE's SNLI",
    ),
)  # fmt: skip
HUB_BY_TASK = {h.task: h for h in HUB_TASKS}


def tsv_bytes(spec: HubTask, ds) -> tuple[bytes, int]:
    """One split as GLUE-style TSV bytes, and how many rows were left out (no gold label).

    Tabs and line breaks inside a text (which a TSV line cannot hold) become spaces."""
    features = ds.features
    label = features.get("label")
    names = getattr(label, "names", None)
    lines = ["\t".join(name for name, _ in spec.columns) + "\n"] if spec.header else []
    dropped = 0
    for i, row in enumerate(ds):
        if names is not None and row["label"] == -1:
            dropped += 1
            continue
        lines.append("\t".join(_value(src, row, i, names) for _, src in spec.columns) + "\n")
    return "".join(lines).encode("utf-8"), dropped


def _value(src: str, row: dict, i: int, names) -> str:
    if src == "=row":
        return str(i)
    if src.startswith("="):
        return src[1:]
    if src == "label:name":
        return names[row["label"]]
    if src == "label:int":
        return str(int(row["label"]))
    value = row[src]
    return (
        " ".join(str(value).replace("\t", " ").splitlines())
        if isinstance(value, str)
        else str(value)
    )


def _load_dataset():
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataError("--source hf needs the `datasets` package: pip install datasets") from None
    return load_dataset


def build_from_hub(
    dest: Path,
    tasks: list[str] | None = None,
    *,
    load: Callable | None = None,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Write ``dest/<task>/<file>`` for each hub task (all by default); returns the tasks
    written. A file that exists with other bytes is never overwritten."""
    load = load or _load_dataset()
    chosen = [HUB_BY_TASK[t] for t in tasks] if tasks else list(HUB_TASKS)
    done = []
    for spec in chosen:
        for file, split in spec.splits.items():
            target = dest / spec.task / file
            try:
                ds = load(spec.dataset, spec.config, split=split)
            except Exception as e:  # offline, or the hub changed: datasets raises many kinds
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise DataError(
                    f"cannot load {spec.dataset}"
                    + (f" ({spec.config})" if spec.config else "")
                    + f" split {split!r} from the Hugging Face hub ({first}); with no network "
                    "use --source lmbff --url ... or set TUNEBENCH_DATA"
                ) from None
            data, dropped = tsv_bytes(spec, ds)
            if target.exists() and target.read_bytes() != data:
                raise DataError(
                    f"{target} exists with other bytes; nothing overwritten: move it away or "
                    "pass another --dest"
                )
            atomic_write_bytes(target, data)
            left = f", {dropped:,} rows without a gold label left out" if dropped else ""
            rows = len(ds) - dropped
            say(f"{target}: {rows:,} rows from {spec.dataset} {split}{left}")
        done.append(spec.task)
    return done
