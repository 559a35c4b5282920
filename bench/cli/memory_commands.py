"""The ``memory`` sub-command: predicted peak memory of a training step, from configs alone."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.cli.app import _print_table, command
from bench.core.errors import BackboneError, TunebenchError


def _memory_options(p) -> None:
    p.add_argument(
        "--backbone", action="append", help="backbone(s), any in `tunebench backbones` (default: "
        "roberta-large)",
    )  # fmt: skip
    p.add_argument("--method", action="append", help="method(s) (default: every registered method)")
    p.add_argument("--task", default="SST-2", help="task (its classes and template; default SST-2)")
    p.add_argument(
        "--batch-size",
        type=int,
        action="append",
        help="examples per micro-batch (repeatable; default: the method's)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=0,
        help="tokens per sequence, every sequence full (default: the task's)",
    )
    p.add_argument(
        "--precision",
        action="append",
        choices=("fp32", "bf16", "fp16"),
        help="fp32, or autocast to bf16/fp16 with fp32 master weights (repeatable; default: "
        "the run's precision setting if it has one, else fp32)",
    )
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cuda (default: fused attention kernels, 512-byte allocator blocks, cuBLAS "
        "workspace) or cpu (as the run's own CPU tracker counts)",
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="method option, e.g. --set r=16"
    )
    p.add_argument(
        "--device-memory",
        help="memory of the device, e.g. 24GiB: each row says whether it fits",
    )
    p.add_argument(
        "--json",
        type=Path,
        help="also write the predictions to this JSON file (the report reads "
        "bench/report/predicted_memory.json); refuses to overwrite without --force",
    )
    p.add_argument("--force", action="store_true", help="overwrite the --json file")


@command(
    "memory",
    "predict the peak memory of one training step (no weights, no network), split into "
    "weights, gradients, optimizer state and activations",
)(_memory_options)
def cmd_memory(args) -> int:
    import itertools

    from bench.cli.commands import parse_sets
    from bench.core.io import atomic_write_json
    from bench.run.memory import estimate, parse_size, predictions_document
    from methods import REGISTRY, get_method
    from tasks import get_task

    if args.json is not None and args.json.exists() and not args.force:
        raise TunebenchError(f"--json {args.json}: the file exists; add --force to overwrite it")
    budget = parse_size(args.device_memory) if args.device_memory else None
    task = get_task(args.task)
    methods = [get_method(m) for m in (args.method or REGISTRY)]
    overrides = parse_sets(args.set)
    rows, done = [], []
    for backbone, method, batch_size, precision in itertools.product(
        args.backbone or ["roberta-large"],
        methods,
        args.batch_size or [None],  # None: the method's
        args.precision or [None],  # None: the method's setting, else fp32
    ):
        try:
            e = estimate(backbone, method, task, overrides, batch_size=batch_size,
                         max_length=args.max_length or None, precision=precision,
                         device=args.device)  # fmt: skip
        except BackboneError as err:  # a refusal is a row, not the end of the table
            reason = str(err).split(": ", 1)[-1]
            rows.append(
                {"backbone": backbone, "method": method.name, "note": f"refused: {reason[:70]}"}
            )
            continue
        done.append(e)
        rows.append(_row(e, budget))
    columns = ["backbone", "method", "batch", "length", "precision", *PARTS_SHOWN, "peak"]
    columns += [c for c in ("fits", "note") if any(c in r for r in rows)]
    _print_table([{c: r.get(c, "") for c in columns} for r in rows], columns)
    print(
        f"\npredicted for {args.device.upper()} from the configs alone (fake tensors: one "
        "training step after a warm-up step, fused AdamW; untrained methods: one no_grad "
        "forward); the parts are what is live at the peak."
    )
    if args.json is not None:
        atomic_write_json(args.json, predictions_document(done))
        print(f"wrote {len(done)} predictions to {args.json}", file=sys.stderr)
    return 0


PARTS_SHOWN = ("weights", "gradients", "optimizer", "activations")


def _row(e, budget: int | None) -> dict:
    from bench.run.memory import fits, format_bytes

    row = {"backbone": e.backbone, "method": e.label, "batch": e.batch_size,
           "length": e.max_length, "precision": e.precision}  # fmt: skip
    row |= {part: format_bytes(getattr(e, part)) for part in (*PARTS_SHOWN, "peak")}
    if budget is not None:
        row["fits"] = "yes" if fits(e, budget) is None else "NO"
    return row
