"""Runs one configuration of one cell: split -> build -> train -> evaluate -> record.

The runner treats every method alike: it asks the method to build a model, trains it if the
method trains, and evaluates. Backbones are loaded once per process and copied for each
build, since methods change what they are given (adapters, frozen flags, weights).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.backbones.cache import default_device, fresh_backbone, pristine_backbone
from bench.backbones.catalog import Backbone
from bench.engine import compute, data, precision
from bench.engine.measure import parameter_report, peak_memory
from bench.engine.train import Hyper, evaluate, train
from bench.run.record import new_record
from methods import get_method
from methods.base import Method
from tasks import Task, get_task
from tasks.splits import Split, sample_split


@dataclass(frozen=True)
class Cell:
    backbone: str
    task: str
    method: str
    k: int = 16
    seed: int = 13
    partial: bool = False


_FOUND: dict[tuple, tuple[dict, float]] = {}


@dataclass
class Trial:
    """One trained (or untrained) configuration, evaluated on dev."""

    model: object
    hp: dict
    dev: dict
    best_step: int | None
    history: list
    memory: dict
    build_s: float
    train_s: float
    train_examples: int
    found: dict | None = None  # what a prompt or verbalizer search found (record: "found")
    prompt_search_s: float = 0.0
    precision: str = "fp32"  # resolved (record: config.precision)
    meter: compute.Meter | None = None  # tokens and FLOPs of this trial (and its test pass)


def prepare(method: Method, backbone: Backbone, task: Task, split: Split, hp: dict):
    """Run the method's and the verbalizer's searches (if any) on the K-shot data, once per
    cell and search settings; return (found, seconds the search took when it ran)."""
    from methods.verbalizers.registry import get_verbalizer

    steps = [(method.search, method.search_keys)]
    if "verbalizer" in hp:
        v = get_verbalizer(hp["verbalizer"])
        steps.append((v.search, v.search_keys + ("verbalizer",)))
    steps = [(fn, keys) for fn, keys in steps if fn is not None]
    if not steps:
        return None, 0.0
    key = (
        backbone.name,
        task.name,
        split.fingerprint,
        method.name,
        tuple((k, repr(hp.get(k))) for _, keys in steps for k in keys),
    )
    if key not in _FOUND:
        start, found = time.perf_counter(), {}
        for fn, _ in steps:
            found.update(fn(backbone, task, split, {**hp, "found": dict(found)}))
        _FOUND[key] = (found, time.perf_counter() - start)
    return _FOUND[key]


def run_trial(
    method: Method,
    backbone_name: str,
    task: Task,
    split: Split,
    hp: dict,
    device: torch.device,
    *,
    report=None,
    progress=False,
) -> Trial:
    """Search (once per cell), build, train if the method trains, evaluate on dev; every
    model of the trial (its searches' included) runs in the resolved precision."""
    resolved = precision.resolve(hp.get("precision", "auto"), device)
    meter = compute.Meter()
    with precision.using(resolved), compute.metering(meter):
        trial = _trial(method, backbone_name, task, split, hp, device, report, progress)
    trial.precision, trial.meter = resolved, meter
    return trial


def _trial(method, backbone_name, task, split, hp, device, report, progress) -> Trial:
    start = time.perf_counter()
    backbone = fresh_backbone(backbone_name, device)
    method.check(backbone, hp)
    torch.manual_seed(split.seed)  # searches, heads and adapters start from the cell's seed
    with compute.phase("search"):
        found, search_s = prepare(method, backbone, task, split, hp)
    found = found or None  # a search with nothing to find (e.g. in-context uncalibrated)
    if found is not None:
        hp = {**hp, "found": found}
    torch.manual_seed(split.seed)
    model = method.build(backbone, task, hp).to(device)
    model.precision = precision.current()  # whatever the builder made
    build_s = time.perf_counter() - start - search_s
    h = Hyper.from_dict(hp)
    if method.trains:
        result = train(
            model, task, split.train, split.dev, h, split.seed, report=report, progress=progress
        )
        return Trial(
            model,
            hp,
            result.best_dev,
            result.best_step,
            result.history,
            result.memory,
            build_s,
            result.seconds,
            result.examples_seen,
            found,
            search_s,
        )
    with compute.phase("dev"):
        dev = evaluate(model, task, split.dev, split.train, split.seed, h.eval_batch_size)
    with compute.phase("memory"):
        memory = _inference_memory(model, split, h, device)
    return Trial(model, hp, dev.metrics, None, [], memory, build_s, 0.0, 0, found, search_s)


def _inference_memory(model, split: Split, h: Hyper, device) -> dict:
    """Peak memory of one inference batch (methods that do not train)."""
    items = data.encode_eval(model, split.dev[: h.batch_size], split.train, split.seed)
    batch = data.collate(items, split.dev[: h.batch_size], model.pad_id)
    model.eval()

    def step():
        with torch.no_grad():
            model(batch)

    m = peak_memory(step, [model], None, device)
    m["how"] = "inference batch of batch_size examples; " + m["how"]
    return m


def finish_record(
    record: dict, trial: Trial, method: Method, backbone_name: str, task: Task, split: Split, device
) -> dict:
    """Evaluate the chosen configuration on the test set(s) and fill the record."""
    model, h = trial.model, Hyper.from_dict(trial.hp)
    backbone = pristine_backbone(backbone_name)
    tests, predictions, eval_s, eval_n = {}, {}, 0.0, 0
    meter = trial.meter if trial.meter is not None else compute.Meter()
    for name, rows in split.test.items():
        with compute.metering(meter), compute.phase("test:" + name):
            ev = evaluate(model, task, rows, split.train, split.seed, h.eval_batch_size)
        tests[name] = ev.metrics
        predictions[name] = test_predictions(ev.logits, rows)
        eval_s, eval_n = eval_s + ev.seconds, eval_n + ev.examples
    primary = task.metrics[0]
    prompt = model.encoder.r.prompt  # the template the model read, if any
    describe = getattr(model.head, "describe", None)
    record.update(
        status="ok",
        found=trial.found,
        config={
            "hyperparameters": {k: v for k, v in trial.hp.items() if k != "found"},
            "verbalizer": describe() if describe else None,
            "prompt": None
            if prompt is None
            else {
                "template": prompt.template,
                "words": list(prompt.words),
                "s1": prompt.s1,
                "s2": prompt.s2,
            },
            "max_length": model.encoder.r.max_length,
            "precision": trial.precision,
            "pooling": model.pooling,  # what a classifier head read; null: the LM head
            "demonstrations": demonstrations(model.encoder.r),
            "split": {
                "fingerprint": split.fingerprint,
                "short": split.short,
                "sizes": {
                    "train": len(split.train),
                    "dev": len(split.dev),
                    **{n: len(r) for n, r in split.test.items()},
                },
            },
        },
        dev={**trial.dev, "best_step": trial.best_step},
        test=tests,
        primary_metric=primary,
        test_score=next(iter(tests.values()))[primary],
        predictions=predictions,
        history=trial.history,
        params=parameter_report(model, backbone.num_parameters()),
        memory={**trial.memory, "device": str(device)},
        compute=compute_report(model, meter, list(split.test)),
        time={
            "prompt_search_s": trial.prompt_search_s,
            "build_s": trial.build_s,
            "train_s": trial.train_s,
            "train_examples_per_s": trial.train_examples / trial.train_s if trial.train_s else None,
            "eval_s": eval_s,
            "eval_examples_per_s": eval_n / eval_s if eval_s else None,
        },
    )
    return record


def digits(values) -> str | list[int]:
    """Class indices, compactly: one character per example when every class is one digit."""
    values = [int(v) for v in values]
    return "".join(map(str, values)) if all(0 <= v <= 9 for v in values) else values


def test_predictions(logits, rows) -> dict:
    """Per test example, in the test file's order: the gold label, the predicted class and
    the class probabilities, so two records can be compared example by example and scored by
    any metric of the probabilities. The probabilities are one line of text (a list of
    lists would take a line per number in the indented record): examples separated by
    spaces, classes by commas, 4 decimals ("0.1234,0.8766 0.5001,0.4999 ...")."""
    probs = torch.from_numpy(logits).float().softmax(-1)  # (N, C)
    return {
        "labels": digits(ex.label for ex in rows),
        "pred": digits(probs.argmax(-1).tolist()),
        "probs": " ".join(",".join(f"{p:.4f}" for p in row) for row in probs.tolist()),
    }


def demonstrations(r) -> dict | None:
    """How demonstrations were chosen and laid out (null without them)."""
    if not r.demos_per_label:
        return None
    return {
        "per_label": r.demos_per_label,
        "order": r.demo_order,
        "sampling": "per example: numpy default_rng([seed, index in its set]) at inference, "
        "the training generator in training; never the example itself",
    }


def compute_report(model, meter: compute.Meter, test_sets: list[str]) -> dict:
    """Tokens and estimated FLOPs of the chosen trial, per phase, and of its test pass(es)."""
    phases = {"search": {}, "train": {}, "dev": {}}
    phases.update({k: {} for k in meter.phases if not k.startswith("test:")})
    return {
        "flop_parameters": model.flop_parameters,
        "how": compute.HOW,
        **{k: meter.get(k).as_dict() for k in phases},
        "test": {name: meter.get("test:" + name).as_dict() for name in test_sets},
        "total": meter.total().as_dict(),
    }


def run_cell(
    cell: Cell,
    overrides: dict,
    data_root: Path,
    *,
    device=None,
    progress: bool = False,
    allow_short: bool = False,
) -> dict:
    """Run one configuration (defaults + overrides) of ``cell``; return its record."""
    start = time.perf_counter()
    device = device or default_device()
    task, method = get_task(cell.task), get_method(cell.method)
    hp = method.hyperparameters(overrides)
    record = new_record(
        {
            **asdict(cell),
            "task": task.name,
            "method_label": method.label(hp),
            "family": method.family,
        },
        str(device),
    )
    split = sample_split(
        task, cell.k, cell.seed, data_root, partial=cell.partial, allow_short=allow_short
    )
    trial = run_trial(method, cell.backbone, task, split, hp, device, progress=progress)
    finish_record(record, trial, method, cell.backbone, task, split, device)
    record["compute"]["cell"] = dict(record["compute"]["total"])  # one run: the cell is the trial
    record["time"]["total_s"] = time.perf_counter() - start
    return record
