"""Task adapters: declarative records (``tasks.catalog``), their readers (``tasks.readers``),
PTR's rules (``tasks.ptr_rules``) and LM-BFF's K-shot sampling (``tasks.splits``).

May import: ``bench.core`` only.
"""

from __future__ import annotations

from tasks.base import Example, Files, Prompt, Task
from tasks.catalog import TASK_LIST

TASKS: dict[str, Task] = {t.name: t for t in TASK_LIST}
_BY_FOLDED = {name.lower(): name for name in TASKS}


def get_task(name: str) -> Task:
    """The task named ``name`` (case-insensitive: "sst-2" and "SST-2" are the same task)."""
    canonical = _BY_FOLDED.get(name.lower())
    if canonical is None:
        from bench.core.errors import unknown

        raise unknown("task", name, TASKS)
    return TASKS[canonical]


__all__ = ["TASKS", "Example", "Files", "Prompt", "Task", "get_task"]
