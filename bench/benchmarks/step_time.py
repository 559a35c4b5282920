"""Training step time: the harness against a minimal PyTorch loop and PEFT + HF ``Trainer``.

    python -m bench.benchmarks.step_time [--backbone smollm2-135m] [--batch-size 8]
        [--steps 3] [--rounds 4] [--methods finetune,lora]

One process, one model, one batch (the first rows of SST-2's K=16 seed-13 train split, the
whole training set, so every step sees the same padded batch), for each contender:

- ``harness``: ``bench.engine.train.train`` itself, as the runner calls it. Steps are timed from
  inside it by a global optimizer post-step hook: the time between two ``optimizer.step()``
  ends is exactly one step of the loop (batching, forward, backward, clipping, AdamW,
  schedule, zero_grad). The step after the first carries the memory probe; both are dropped.
- ``minimal``: forward (body -> hidden state at the read position -> head), cross-entropy,
  backward, the same fused AdamW, ``zero_grad``, on the harness's own modules and a batch
  collated once.
- ``PEFT+Trainer``: ``AutoModelForSequenceClassification`` from the same weights (with
  ``get_peft_model`` and PEFT's LoRA for ``lora``), trained by ``transformers.Trainer`` with
  the same batch size, lr, fused AdamW, linear schedule and clipping; a callback stamps each
  ``on_step_end``; set-up is not timed, the first step is dropped.

Runs of the contenders alternate (the order rotating) after a warm-up round; the table gives
the median ms per step over every timed step, its interquartile range, and the ratios.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

from bench.backbones.cache import fresh_backbone, pristine_backbone
from bench.benchmarks import machine_line, median_ms, print_table, spread_ms, sst2_rows
from bench.engine import data
from bench.engine.train import Hyper, train
from methods import get_method
from tasks import get_task

SEED = 13
CPU = torch.device("cpu")


class StepClock:
    """Timestamps of every ``optimizer.step()`` end, from a global post-step hook."""

    def __enter__(self):
        self.stamps: list[float] = []
        self._handle = register_optimizer_step_post_hook(
            lambda opt, args, kwargs: self.stamps.append(time.perf_counter())
        )
        return self

    def __exit__(self, *exc):
        self._handle.remove()

    def intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


@dataclass
class Contender:
    method: str
    impl: str
    run: Callable[[int], list[float]]  # (steps) -> seconds of the timed steps
    samples: list[float] = field(default_factory=list)
    model: object = None  # the harness's TaskModel


# --- the three implementations --------------------------------------------------------


def harness(backbone: str, method_name: str, rows, batch_size: int) -> tuple[Contender, object]:
    task, method = get_task("SST-2"), get_method(method_name)
    hp = method.hyperparameters({"batch_size": batch_size})
    b = fresh_backbone(backbone, CPU)
    method.check(b, hp)
    torch.manual_seed(SEED)
    model = method.build(b, task, hp)

    def run(steps: int) -> list[float]:
        h = Hyper.from_dict({**hp, "steps": steps + 2, "eval_every": steps + 2})
        with StepClock() as clock:
            train(model, task, rows, rows, h, SEED)
        return clock.intervals()[1:]  # step 0 is in no interval; step 1 ran the memory probe

    return Contender(method_name, "harness", run, model=model), model


def extra_work(model, rows, repeats: int = 10) -> tuple[float, float]:
    """Median seconds of what a harness step does beyond a minimal loop, each timed alone:
    clipping the gradient norm (over stand-in gradients) and batching (render, order, collate)."""
    params = [p for p in model.parameters() if p.requires_grad]
    rng = np.random.default_rng(SEED)

    def timed(fn) -> float:
        out = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
        return statistics.median(out)

    for p in params:
        p.grad = torch.randn_like(p)
    clip = timed(lambda: torch.nn.utils.clip_grad_norm_(params, 1.0))
    for p in params:
        p.grad = None
    order = data.train_order([len(r.text_a) for r in rows], len(rows), rng)
    batching = timed(
        lambda: list(data.batches(data.encode(model, rows, rows, rng), rows, order, model.pad_id))
    )
    return clip, batching


def minimal(method_name: str, model, rows, lr: float) -> Contender:
    """A hand-written loop over the harness's own modules (body, head), same batch."""
    batch = data.collate(data.encode_eval(model, rows, rows, SEED), rows, model.pad_id)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["label"]
    at = (torch.arange(len(rows)), batch["position"])
    params = [p for p in model.parameters() if p.requires_grad]

    def run(steps: int) -> list[float]:
        model.train()
        opt = torch.optim.AdamW(params, lr=lr, fused=True)
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            hidden = model.body(input_ids=ids, attention_mask=mask).last_hidden_state  # (B,T,H)
            loss = F.cross_entropy(model.head(hidden[at]), labels)  # head: (B, H) -> (B, C)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        return times[1:]  # the first step creates the optimizer state

    return Contender(method_name, "minimal", run)


def hf_trainer(backbone: str, method_name: str, rows, batch_size: int) -> Contender:
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from methods.lora import TARGETS

    b = pristine_backbone(backbone)
    tok, hp = b.tokenizer, get_method(method_name).hyperparameters()
    torch.manual_seed(SEED)
    config = copy.deepcopy(b.model.config)
    config.num_labels, config.pad_token_id = 2, tok.pad_token_id
    model = AutoModelForSequenceClassification.from_config(config)
    model.base_model.load_state_dict(b.model.base_model.state_dict())
    if method_name == "lora":
        config = LoraConfig(
            task_type="SEQ_CLS",
            r=hp["r"],
            lora_alpha=hp["alpha"],
            lora_dropout=hp["dropout"],
            target_modules=TARGETS[b.model.config.model_type],
        )
        model = get_peft_model(model, config)
    dataset = [
        {**tok(ex.text_a, truncation=True, max_length=128), "labels": ex.label} for ex in rows
    ]

    class Clock(TrainerCallback):
        def __init__(self):
            self.stamps = []

        def on_step_end(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())

    def run(steps: int) -> list[float]:
        clock = Clock()
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                output_dir=out,
                per_device_train_batch_size=batch_size,
                max_steps=steps + 1,
                learning_rate=hp["lr"],
                lr_scheduler_type="linear",
                warmup_steps=0,
                weight_decay=0.0,
                max_grad_norm=1.0,
                optim="adamw_torch_fused",
                logging_strategy="no",
                save_strategy="no",
                eval_strategy="no",
                report_to="none",
                use_cpu=True,
                seed=SEED,
                disable_tqdm=True,
                dataloader_num_workers=0,
            )
            trainer = Trainer(
                model=model,
                args=args,
                train_dataset=dataset,
                data_collator=DataCollatorWithPadding(tok),
                callbacks=[clock],
            )
            trainer.remove_callback(PrinterCallback)  # no metrics printout
            trainer.train()
        return [b - a for a, b in zip(clock.stamps, clock.stamps[1:])]  # step 0 in none

    return Contender(method_name, "PEFT+Trainer", run)


# --- the benchmark --------------------------------------------------------------------


def contenders(
    backbone: str, methods: list[str], batch_size: int, data_dir: str | None = None
) -> list[Contender]:
    rows = sst2_rows(batch_size, data_dir=data_dir)
    out = []
    for m in methods:
        h, model = harness(backbone, m, rows, batch_size)
        lr = get_method(m).hyperparameters()["lr"]
        out += [h, minimal(m, model, rows, lr), hf_trainer(backbone, m, rows, batch_size)]
    return out


def measure(cs: list[Contender], steps: int, rounds: int) -> None:
    for c in cs:  # warm-up: one run each with no timed step, not recorded
        c.run(0)
    for r in range(rounds):
        k = r % len(cs)
        for c in cs[k:] + cs[:k]:  # rotate the order so no contender always goes first
            c.samples += c.run(steps)


def report(cs: list[Contender]) -> list[dict]:
    rows = []
    for c in cs:
        base = next(x for x in cs if x.method == c.method and x.impl == "harness")
        ratio = median_ms(base.samples) / median_ms(c.samples)
        if c.impl == "minimal":
            target, met = "harness <= 1.05 x minimal", ratio <= 1.05
        elif c.impl == "PEFT+Trainer":
            target, met = "harness <= Trainer", ratio <= 1.0
        else:
            target, met = "", None
        rows.append(
            {
                "method": c.method,
                "implementation": c.impl,
                "ms/step (median)": f"{median_ms(c.samples):.0f}",
                "IQR ms": spread_ms(c.samples),
                "steps": len(c.samples),
                "harness / this": f"{ratio:.3f}",
                "target": target,
                "met": "" if met is None else ("yes" if met else "NO"),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=2, help="timed steps per run")
    p.add_argument("--rounds", type=int, default=3, help="timed runs of each contender")
    p.add_argument("--methods", default="finetune,lora")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared CPU, threads beyond the free cores wait "
        "on each other and swamp the differences measured; 0 = torch's default)",
    )
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations inside PEFT
    start = time.perf_counter()
    cs = contenders(args.backbone, args.methods.split(","), args.batch_size, args.data_dir)
    print(
        f"training step time on {args.backbone}, batch {args.batch_size} (SST-2 K=16 seed 13 "
        f"train rows), {args.rounds} interleaved runs x {args.steps} timed steps each"
    )
    print(machine_line())
    measure(cs, args.steps, args.rounds)
    print()
    print_table(
        report(cs),
        [
            "method",
            "implementation",
            "ms/step (median)",
            "IQR ms",
            "steps",
            "harness / this",
            "target",
            "met",
        ],
    )
    print("\nwork a harness step does beyond the minimal loop, timed alone (median of 10):")
    for c in cs:
        if c.impl == "harness":
            clip, batching = extra_work(c.model, sst2_rows(args.batch_size, data_dir=args.data_dir))
            share = 100 * (clip + batching) * 1000 / median_ms(c.samples)
            print(
                f"  {c.method}: gradient-norm clipping {1000 * clip:.1f} ms, batching (render, "
                f"order, collate) {1000 * batching:.1f} ms: {share:.1f}% of its median step"
            )
    print(f"\n{machine_line()}; total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
