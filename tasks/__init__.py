"""Task adapters: declarative records read from TOML files (``tasks.taskfile``; the built-in
ones in ``tasks/builtin/``, loaded by ``tasks.catalog``), their readers (``tasks.readers``,
``tasks.tables``), PTR's rules (``tasks.ptr_rules``), LM-BFF's K-shot sampling
(``tasks.splits``), and the data itself: fetching LM-BFF's ``datasets.tar`` or building it
from the hub (``tasks.fetch``, ``tasks.hub``) and verifying it (``tasks.verify``).

A user's own task files join the built-in ones: ``--task-file FILE`` on the command line, or
``$TUNEBENCH_TASKS`` (task files or folders of them, separated by ``os.pathsep``).

May import: ``bench.core`` only.
"""

from __future__ import annotations

import os
from pathlib import Path

from tasks.base import Example, Files, Prompt, Task
from tasks.catalog import BUILTIN_RULES, TASK_LIST
from tasks.ptr_rules import RULES
from tasks.taskfile import TaskFileError, load_task_file

TASKS_ENV = "TUNEBENCH_TASKS"

TASKS: dict[str, Task] = {t.name: t for t in TASK_LIST}
_BY_FOLDED = {name.lower(): name for name in TASKS}
RULES.update(BUILTIN_RULES)


def get_task(name: str) -> Task:
    """The task named ``name`` (case-insensitive: "sst-2" and "SST-2" are the same task)."""
    canonical = _BY_FOLDED.get(name.lower())
    if canonical is None:
        from bench.core.errors import unknown

        raise unknown("task", name, TASKS)
    return TASKS[canonical]


def add_task_file(path: str | os.PathLike, *, export: bool = True) -> Task:
    """Read a user's task file and add its task to ``TASKS`` (and its PTR rules to ``RULES``).

    With ``export``, the file is also appended to ``$TUNEBENCH_TASKS``, so worker processes
    started from here (``sweep --workers``) know the task too. Adding the same file twice is
    harmless; a name already taken by another task is an error naming both.
    """
    path = Path(path).expanduser().resolve()
    task, rules = load_task_file(path)
    known = _BY_FOLDED.get(task.name.lower())
    if known is not None:
        if TASKS[known].source == str(path):
            return TASKS[known]
        where = TASKS[known].source or "the built-in catalog"
        raise TaskFileError(
            f"{path}: key 'name': task {task.name!r} is already declared by {where}; "
            "give this task another name"
        )
    TASKS[task.name] = task
    _BY_FOLDED[task.name.lower()] = task.name
    if rules is not None:
        RULES[task.name] = rules
    if export:
        listed = os.environ.get(TASKS_ENV, "")
        if str(path) not in listed.split(os.pathsep):
            os.environ[TASKS_ENV] = os.pathsep.join(filter(None, [listed, str(path)]))
    return task


def load_env_tasks() -> list[Task]:
    """The task files named by ``$TUNEBENCH_TASKS`` (files, or folders of ``*.toml``)."""
    added = []
    for entry in filter(None, os.environ.get(TASKS_ENV, "").split(os.pathsep)):
        where = Path(entry).expanduser()
        if where.is_dir():
            files = sorted(where.glob("*.toml"))
        elif where.is_file():
            files = [where]
        else:
            raise TaskFileError(
                f"${TASKS_ENV} names {entry}, which does not exist; "
                "set it to task files or folders of them (separated by ':')"
            )
        added += [add_task_file(f, export=False) for f in files]
    return added


load_env_tasks()

__all__ = ["RULES", "TASKS", "Example", "Files", "Prompt", "Task", "add_task_file", "get_task"]
