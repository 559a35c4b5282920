"""The built-in tasks: LM-BFF's 15 tasks plus GLUE-SST-2, one TOML file each in
``tasks/builtin/`` (the format of ``tasks.taskfile``, the same a user's own task uses).

Templates and label words are LM-BFF's manual prompts (Gao et al. 2021, Table 1). The
``causal`` variants are phrasings that suit a next-token LM (measured on SmolLM2-135M; see
README); they are named prompt variants, never silently substituted. PTR's rules (Han et al.
2021) sit in each file's ``[ptr]`` table.
"""

from __future__ import annotations

from pathlib import Path

from tasks.base import Task
from tasks.ptr_rules import Rules
from tasks.taskfile import load_task_file

BUILTIN_DIR = Path(__file__).with_name("builtin")

# The catalog's order (tables list tasks in it): LM-BFF's single-sentence tasks, then pairs.
ORDER = (
    "SST-2", "sst-5", "mr", "cr", "mpqa", "subj", "trec", "CoLA",
    "MNLI", "SNLI", "QNLI", "RTE", "MRPC", "QQP", "STS-B", "GLUE-SST-2",
)  # fmt: skip


def load_builtin() -> tuple[list[Task], dict[str, Rules]]:
    """Every ``tasks/builtin/*.toml``, in ``ORDER`` (any other file after, by name)."""
    rank = {name: i for i, name in enumerate(ORDER)}
    loaded = [load_task_file(p) for p in sorted(BUILTIN_DIR.glob("*.toml"))]
    loaded.sort(key=lambda tr: (rank.get(tr[0].name, len(ORDER)), tr[0].name))
    rules = {task.name: r for task, r in loaded if r is not None}
    return [task for task, _ in loaded], rules


TASK_LIST, BUILTIN_RULES = load_builtin()
