"""Task adapters: declarative records (``tasks.catalog``) and their readers (``tasks.readers``)."""

from __future__ import annotations

from tasks.base import Example, Files, Prompt, Task
from tasks.catalog import TASK_LIST

TASKS: dict[str, Task] = {t.name: t for t in TASK_LIST}
_BY_FOLDED = {name.lower(): name for name in TASKS}


def get_task(name: str) -> Task:
    """The task named ``name`` (case-insensitive: "sst-2" and "SST-2" are the same task)."""
    canonical = _BY_FOLDED.get(name.lower())
    if canonical is None:
        from bench.errors import unknown

        raise unknown("task", name, TASKS)
    return TASKS[canonical]


__all__ = ["TASKS", "Example", "Files", "Prompt", "Task", "get_task"]
