"""fp32 against the ``auto`` precision, side by side: test pass, training step, accuracy.

    python -m bench.benchmarks.precision [--backbone smollm2-135m] [--test-rows 872]
        [--steps 3] [--rounds 2] [--threads 1]

On ``smollm2-135m`` (default), SST-2, K=16 seed 13, in one process, for fp32 and for what
``auto`` resolves to on this machine (``bench.engine.precision``: bf16 where the CPU shows
``amx_bf16``/``avx512_bf16`` or the GPU has bf16, else fp32):

- test pass: ``zero-shot`` (causal prompt, label words at the answer position) scoring the
  SST-2 test sentences (all 872 by default) with ``bench.engine.train.evaluate`` exactly as a
  run does, the feature cache emptied before each pass (so each pass computes); the
  accuracy of both on the same sentences, and how many predictions differ.
- training step: ``prompt-finetune`` (the whole trunk trains) at batch 8 on the K=16 train
  split, ``bench.engine.train.train`` itself, steps timed by the optimizer hook of
  ``step_time`` (the step after the first carries the memory probe: both dropped).

Test passes alternate fp32 / auto (``--rounds`` each, the order rotating); the training runs
too. The table gives the median seconds and the fp32 / auto ratio (above 1: auto is faster).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import numpy as np
import torch

from bench.backbones.cache import default_device, fresh_backbone
from bench.benchmarks import machine_line, print_table, sst2_rows
from bench.benchmarks.step_time import StepClock
from bench.engine import data, precision
from bench.engine.train import Hyper, evaluate, train
from methods import get_method
from tasks import get_task

SEED = 13


def cpu_line() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
            )
    except OSError:
        pass
    flags = sorted(f for f in precision.cpu_flags() if "bf16" in f or f.startswith("amx"))
    return f"CPU: {model}; bf16-related flags: {', '.join(flags) or 'none'}"


def test_pass(backbone: str, prec: str, rows, device) -> tuple[float, np.ndarray, float]:
    """Seconds, predictions and accuracy of one zero-shot test pass in ``prec``."""
    task, method = get_task("SST-2"), get_method("zero-shot")
    hp = method.hyperparameters({"precision": prec})
    with precision.using(prec):
        model = method.build(fresh_backbone(backbone, device), task, hp)
    data.FEATURES.clear()  # compute, never reuse
    start = time.perf_counter()
    ev = evaluate(model, task, rows, rows[:0], SEED, hp["eval_batch_size"])
    seconds = time.perf_counter() - start
    return seconds, ev.logits.argmax(-1), ev.metrics["acc"]


def train_steps(backbone: str, prec: str, rows, steps: int, device) -> list[float]:
    task, method = get_task("SST-2"), get_method("prompt-finetune")
    hp = method.hyperparameters({"precision": prec, "batch_size": 8})
    with precision.using(prec):
        torch.manual_seed(SEED)
        model = method.build(fresh_backbone(backbone, device), task, hp)
    h = Hyper.from_dict({**hp, "steps": steps + 2, "eval_every": steps + 2})
    with StepClock() as clock:
        train(model, task, rows, rows[:8], h, SEED)
    return clock.intervals()[1:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--test-rows", type=int, default=872)
    p.add_argument("--steps", type=int, default=3, help="timed training steps per run")
    p.add_argument("--rounds", type=int, default=1, help="timed runs of each precision")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    device = torch.device(args.device) if args.device else default_device()
    auto = precision.resolve("auto", device)
    choices = ["fp32", auto] if auto != "fp32" else ["fp32", "fp32 (auto)"]
    test_rows = sst2_rows(args.test_rows, "test", args.data_dir)
    train_rows = sst2_rows(32, "train", args.data_dir)
    start = time.perf_counter()
    print(
        f"precision: fp32 against auto (= {auto} here) on {args.backbone}, {device}; test pass: "
        f"zero-shot over {len(test_rows)} SST-2 test sentences; training step: prompt-finetune "
        f"at batch 8; {args.rounds} round(s), order rotating"
    )
    print(cpu_line())
    print(machine_line())
    passes = {c: [] for c in choices}
    steps = {c: [] for c in choices}
    preds, accs = {}, {}
    for r in range(args.rounds):
        order = choices if r % 2 == 0 else choices[::-1]
        for c in order:
            s, pred, acc = test_pass(args.backbone, c.split()[0], test_rows, device)
            passes[c].append(s)
            preds[c], accs[c] = pred, acc
            print(f"  round {r + 1}: test pass {c}: {s:.1f} s, acc {100 * acc:.1f}", flush=True)
        for c in order:
            steps[c] += train_steps(args.backbone, c.split()[0], train_rows, args.steps, device)
            print(
                f"  round {r + 1}: train steps {c}: {[round(x, 2) for x in steps[c]]} s", flush=True
            )
    base = choices[0]
    rows = []
    for c in choices:
        tp, st = statistics.median(passes[c]), statistics.median(steps[c])
        rows.append(
            {
                "precision": c,
                "test pass s": f"{tp:.1f}",
                "sentences/s": f"{len(test_rows) / tp:.1f}",
                "fp32/this (test)": f"{statistics.median(passes[base]) / tp:.2f}",
                "train step s": f"{st:.2f}",
                "fp32/this (step)": f"{statistics.median(steps[base]) / st:.2f}",
                "test acc": f"{100 * accs[c]:.1f}",
                "predictions differing from fp32": int((preds[c] != preds[base]).sum()),
            }
        )
    print()
    print_table(rows, list(rows[0]))
    print(f"\n{machine_line()}; total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
