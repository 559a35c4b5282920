"""Sub-commands that train or build models: run, params, show."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.cli.app import _print_table, add_data_options, command
from bench.core import validate
from bench.core.errors import BackboneError, TunebenchError
from bench.core.io import atomic_write_json, save_fallback, without_nonfinite, writable
from bench.core.paths import component, inside


def parse_sets(pairs: list[str] | None) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise TunebenchError(f"--set {pair!r}: expected key=value (e.g. --set lr=1e-4)")
        out[key.strip()] = value.strip()
    return out


def _cell_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backbone", default="smollm2-135m", help="backbone (see `tunebench backbones`)"
    )
    p.add_argument("--task", default="SST-2", help="task (see `tunebench tasks`)")
    p.add_argument("--method", required=True, help="method (see `tunebench methods`)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="hyperparameter or method option (repeatable), e.g. --set lr=1e-4",
    )


# --- run -------------------------------------------------------------------------------


def _run_options(p):
    _cell_options(p)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument(
        "--out",
        type=Path,
        help="record path (default: results/runs/<backbone>/<task>/<method>/k<K>-seed<S>.json)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing record")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument(
        "--allow-short",
        action="store_true",
        help="take fewer than K rows for a label that has fewer than 2K (as `splits`)",
    )
    add_data_options(p)


RUNS = Path("results/runs")


def record_path(rec: dict, root: Path = RUNS) -> Path:
    """Where a run's record goes by default; every name is made one safe path component."""
    c = rec["cell"]
    partial = "-partial" if c["partial"] else ""
    path = (
        root
        / component(c["backbone"])
        / component(f"{c['task']}{partial}")
        / component(c["method_label"])
        / f"k{c['k']}-seed{c['seed']}.json"
    )
    return inside(root, path)


@command("run", "train and evaluate one method on one task split; write one JSON record")(
    _run_options
)
def cmd_run(args) -> int:
    from bench.cli.names import check_cell_args

    check_cell_args(args)  # names and numbers, before the heavy imports (torch: seconds)
    if args.out is not None:
        _check_out(args.out, args.force)
    overrides = parse_sets(args.set)
    validate.known(overrides)  # the shared settings' types and ranges, also before torch

    import torch

    from bench.run.runner import Cell, run_cell
    from bench.sweep.claims import claim, holder
    from methods import get_method
    from tasks import get_task
    from tasks.readers import data_root

    task, method = get_task(args.task), get_method(args.method)  # names checked first
    hp = method.hyperparameters(overrides)  # settings checked before any work
    root = data_root(args.data_dir, tasks=(task,))
    cell = Cell(args.backbone, task.name, method.name, args.k, args.seed, args.partial)
    probe = {"cell": {"backbone": cell.backbone, "task": task.name, "partial": cell.partial,
                      "method_label": method.label(hp), "k": cell.k, "seed": cell.seed}}  # fmt: skip
    out = args.out or record_path(probe)
    _check_out(out, args.force)
    with claim(out) as held:  # the path is this run's until its record is written
        if not held:
            who = holder(out) or {}
            raise TunebenchError(
                f"{out} is claimed by another run (pid {who.get('pid')} on {who.get('host')} "
                f"since {who.get('since')}); wait for it to finish or pass --out elsewhere"
            )
        _check_out(out, args.force)  # (a run that held it may have just finished)
        rec = run_cell(
            cell,
            overrides,
            root,
            device=torch.device(args.device) if args.device else None,
            progress="bar" if sys.stderr.isatty() else "lines",  # never silent for long
            allow_short=args.allow_short,
        )
        _write_record(out, rec)
    print(summary_line(rec) + f"  -> {out}")
    return 0


def _check_out(out: Path, force: bool) -> None:
    """Refuse an existing record (without --force) and a folder this process cannot write."""
    if out.is_dir():
        raise TunebenchError(f"--out {out} is a folder; give the record's file path")
    if out.exists() and not force:
        raise TunebenchError(
            f"{out} exists (a finished run); pass --force to replace it or --out elsewhere"
        )
    try:
        writable(out.parent)
    except OSError as e:
        raise TunebenchError(
            f"cannot write to {out.parent} ({e.strerror or e}); fix its permissions or pass "
            "--out elsewhere (checked before training)"
        ) from None


def _write_record(out: Path, rec: dict) -> None:
    """Write the record; if that fails after the work is done, save it to a fallback file
    and say where (the run is never lost to a traceback)."""
    try:
        try:
            atomic_write_json(out, rec)
        except ValueError as e:  # NaN/inf somewhere: stored as null, and the run says so
            rec = without_nonfinite(rec)
            rec.update(status="failed", error=f"the record held a non-finite number ({e})")
            atomic_write_json(out, rec)
            raise TunebenchError(
                f"the run's record held a non-finite number ({e}); written to {out} with "
                'status "failed" and those values as null'
            ) from None
    except OSError as e:
        saved = save_fallback(rec, out.stem)
        where = f"the record is saved at {saved}" if saved else "no fallback location was writable"
        raise TunebenchError(
            f"cannot write {out} ({e.strerror or e}); {where}; move it into place once fixed"
        ) from None


def summary_line(rec: dict) -> str:
    c, p, t = rec["cell"], rec["params"], rec["time"]
    test = ", ".join(
        f"{'' if name == 'test' else name + ' '}{rec['primary_metric']} "
        f"{m[rec['primary_metric']]:.4f}"
        for name, m in rec["test"].items()
    )
    partial = " [PARTIAL DATA]" if c["partial"] else ""
    peak = rec["memory"].get("peak_bytes")  # absent only where no step was measured
    mem = "n/a" if peak is None else f"{peak / 2**20:.0f} MiB"
    return (
        f"{c['backbone']} {c['task']}{partial} {c['method_label']} K={c['k']} seed={c['seed']}: "
        f"dev {rec['primary_metric']} {rec['dev'][rec['primary_metric']]:.4f}, test {test}; "
        f"trainable {p['trainable']:,} ({p['trainable_pct_of_backbone']:.3f}%); "
        f"peak {mem}; train {t['train_s']:.1f}s, eval {t['eval_s']:.1f}s"
    )


# --- params ----------------------------------------------------------------------------


def _params_options(p):
    p.add_argument(
        "--backbone",
        action="append",
        help="backbone(s) (default: roberta-large, bert-large-uncased)",
    )
    p.add_argument("--method", action="append", help="method(s) (default: all)")
    p.add_argument("--task", default="SST-2", help="task (sets the number of classes)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, e.g. r=8")


@command("params", "count trainable parameters of methods without loading weights")(_params_options)
def cmd_params(args) -> int:
    from bench.run.params import count_method_params
    from methods import REGISTRY, get_method
    from tasks import get_task

    task = get_task(args.task)
    methods = [get_method(m) for m in (args.method or REGISTRY)]
    rows = []
    for b in args.backbone or ["roberta-large", "bert-large-uncased"]:
        for m in methods:
            try:
                rep = count_method_params(b, m, task, parse_sets(args.set))
            except BackboneError as e:  # a refusal is a row, not the end of the table
                reason = str(e).split(": ", 1)[-1]
                rows.append(
                    {
                        "backbone": b,
                        "method": m.name,
                        "family": m.family,
                        "method params": "refused",
                        "head": "-",
                        "trainable": "-",
                        "% of backbone": reason[:70],
                    }
                )
                continue
            rows.append(
                {
                    "backbone": b,
                    "method": rep["label"],
                    "family": m.family,
                    "method params": f"{rep['method']:,}",
                    "head": f"{rep['head']:,}",
                    "trainable": f"{rep['trainable']:,}",
                    "% of backbone": f"{rep['trainable_pct_of_backbone']:.3f}",
                }
            )
    _print_table(
        rows,
        ["backbone", "method", "family", "method params", "head", "trainable", "% of backbone"],
    )
    return 0


# --- show ------------------------------------------------------------------------------


def _show_options(p):
    _cell_options(p)
    p.add_argument("--n", type=int, default=2, help="examples to show")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--k", type=int, default=16)
    add_data_options(p)


@command("show", "print rendered inputs of a task x method, as the model sees them")(_show_options)
def cmd_show(args) -> int:
    from bench.cli.names import check_cell_args

    check_cell_args(args)  # before the heavy imports
    if args.n < 0:
        raise TunebenchError(f"--n {args.n}: expected an integer >= 0 (examples to show)")
    hp_sets = parse_sets(args.set)
    validate.known(hp_sets)

    import torch

    from bench.backbones.cache import fresh_backbone
    from bench.engine.data import eval_rng
    from bench.engine.prompts import template_text
    from bench.run.runner import prepare
    from methods import get_method
    from tasks import get_task
    from tasks.readers import data_root
    from tasks.splits import sample_split

    task, method = get_task(args.task), get_method(args.method)
    hp = method.hyperparameters(hp_sets)
    split = sample_split(task, args.k, args.seed, data_root(args.data_dir), partial=args.partial)
    backbone = fresh_backbone(args.backbone, torch.device("cpu"))
    method.check(backbone, hp)
    found, _ = prepare(method, backbone, task, split, hp)  # a searched prompt or word lists
    model = method.build(backbone, task, hp if found is None else {**hp, "found": found})
    enc, tok = model.encoder, backbone.tokenizer
    print(
        f"task {task.name} | method {method.label(hp)} ({method.family}) | backbone "
        f"{backbone.name} ({backbone.kind}) | max_length {enc.r.max_length}"
    )
    if enc.r.prompt is not None:
        words = [
            f"{w!r} -> {tok.convert_ids_to_tokens(i)!r} ({i})"
            for w, i in zip(enc.r.prompt.words, enc.word_ids)
        ]
        print(f"template: {enc.r.prompt.template!r}\nlabel words: " + "; ".join(words))
    describe = getattr(model.head, "describe", None)
    if describe is not None:
        print(f"verbalizer: {json.dumps(describe())}")
    for i, ex in enumerate(split.train[: args.n]):
        demos = enc.choose_demos(ex, split.train, eval_rng(args.seed, i))
        e = enc.encode(ex, demos)
        print(f"\n--- example {i} (label {task.labels[ex.label]!r}) ---")
        if enc.r.prompt is not None:
            print("text: " + template_text(enc.r.prompt, ex))
        pieces = tok.convert_ids_to_tokens(list(e.ids))
        reads = e.position if isinstance(e.position, tuple) else (e.position,)
        for at in reads:
            pieces[at] = f">>{pieces[at]}<<"
        where = "position" if len(reads) == 1 else "positions"
        print(f"tokens ({len(e.ids)}, head reads {where} {e.position} marked >> <<):")
        print(" ".join(pieces))
    return 0


# --- methods ---------------------------------------------------------------------------


@command("methods", "list the methods: family, head, defaults")(lambda p: None)
def cmd_methods(args) -> int:
    from methods import REGISTRY
    from methods.verbalizers.registry import VERBALIZERS

    rows = [
        {
            "method": m.name,
            "family": m.family,
            "head": m.head,
            "trains": "yes" if m.trains else "no",
            "options": ", ".join(f"{k}={v}" for k, v in m.defaults.items()) or "-",
            "summary": m.summary,
        }
        for m in REGISTRY.values()
    ]
    _print_table(rows, list(rows[0]))
    print(
        "\npooling=auto|cls|mean|last: what a classifier head reads (every method with a pooled "
        "classifier head); auto = the backbone's (`tunebench backbones`)"
    )
    print(
        "\nverbalizers (option verbalizer=NAME of every method that reads the LM head; "
        "the label shows it, e.g. prompt-finetune+kpt):"
    )
    rows = [
        {
            "verbalizer": v.name,
            "learns": "needs training" if v.needs_training else "when the method trains",
            "search": "yes" if v.search else "-",
            "options": ", ".join(f"{k}={x}" for k, x in (v.defaults or {}).items()) or "-",
            "summary": v.summary,
        }
        for v in VERBALIZERS.values()
    ]
    rows[0]["learns"] = "-"  # manual: nothing of its own to learn
    _print_table(rows, list(rows[0]))
    return 0
