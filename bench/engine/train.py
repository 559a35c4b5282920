"""The one training loop (every trained method) and evaluation.

AdamW (fused), linear warmup then linear decay, gradient accumulation, dev evaluation every
``eval_every`` steps with the best dev state kept and restored, deterministic from the seed,
length-bucketed dynamic padding. A frozen trunk is run once per split (features cached) and
only the head trains on its outputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.core.errors import TunebenchError
from bench.core.metrics import compute
from bench.engine import compute as accounting
from bench.engine import data
from bench.engine.measure import peak_memory, unique_parameters
from tasks import Example, Task


class TrainingFailed(TunebenchError):
    """A trial that cannot go on (loss NaN/inf): recorded as failed, the sweep goes on."""


@dataclass(frozen=True)
class Hyper:
    lr: float = 1e-5
    batch_size: int = 8  # examples per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    steps: int = 100
    eval_every: int = 20
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_batch_size: int = 32
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (bench.engine.precision)

    @classmethod
    def from_dict(cls, hp: dict) -> Hyper:
        return cls(**{k: v for k, v in hp.items() if k in cls.__dataclass_fields__})


@dataclass
class Evaluation:
    metrics: dict[str, float]
    loss: float
    seconds: float
    examples: int
    logits: np.ndarray = field(repr=False)


def _features(model, items, examples, batch_size) -> torch.Tensor:
    """Hidden states the head reads, for a frozen trunk: computed once per ``feature_key``
    (in this process, and across processes when the cache has a directory), then reused."""

    def compute_all():
        parts = {}
        with torch.no_grad():
            model.eval()
            for idx, batch in data.batches(
                items,
                examples,
                data.eval_order([len(e.ids) for e in items], batch_size),
                model.pad_id,
            ):
                parts.update(zip(idx, model.features(batch).cpu()))
        return torch.stack([parts[i] for i in range(len(items))])

    feats = data.FEATURES.get(data.feature_key(model, items), compute_all, rows=len(items))
    return feats.to(model.body.get_input_embeddings().weight.device)


def task_metrics(task: Task, probs: np.ndarray, examples: Sequence[Example]) -> dict:
    """The task's metrics of class probabilities (N, C): the argmax against the labels, and
    for a regression task (STS-B) score = 5 * p(label 1) against the gold scores."""
    return compute(
        task.metrics,
        probs.argmax(-1),
        [e.label for e in examples],
        scores=5.0 * probs[:, -1] if task.regression else None,
        targets=[e.score for e in examples] if task.regression else None,
    )


def evaluate(
    model,
    task: Task,
    examples: Sequence[Example],
    pool: Sequence[Example],
    seed: int,
    batch_size: int = 32,
) -> Evaluation:
    """Class scores on ``examples`` and the task's metrics (STS-B: score = 5 * p(label 1))."""
    start = time.perf_counter()
    items = data.encode_eval(model, examples, pool, seed)
    model.eval()
    logits = torch.empty(len(items), task.num_labels)
    loss_sum = 0.0
    with torch.no_grad():
        feats = _features(model, items, examples, batch_size) if model.trunk_frozen else None
        order = data.eval_order([len(e.ids) for e in items], batch_size)
        for idx, batch in data.batches(items, examples, order, model.pad_id):
            if feats is not None:
                batch["features"] = feats[idx]
            out = model(batch).float()
            logits[idx] = out.cpu()  # (B, C); the metrics are computed on the CPU
            loss_sum += model.loss(out, batch).item() * len(idx)
    return Evaluation(
        task_metrics(task, logits.softmax(-1).numpy(), examples),
        loss_sum / max(len(items), 1),
        time.perf_counter() - start,
        len(items),
        logits.numpy(),
    )


@dataclass
class TrainResult:
    best_step: int
    best_dev: dict
    history: list[dict]
    seconds: float
    examples_seen: int
    memory: dict


def _schedule(hp: Hyper):
    warm = int(hp.warmup_ratio * hp.steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (hp.steps - step) / max(1, hp.steps - warm))

    return factor


def train(
    model,
    task: Task,
    train_ex,
    dev_ex,
    hp: Hyper,
    seed: int,
    *,
    report=None,
    progress: str | bool = False,
) -> TrainResult:
    """Train the model's trainable parameters; return the best dev state's summary.

    ``report(step, dev_score)`` is called after each dev evaluation (an Optuna pruner hook);
    it may raise to stop the trial.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for p in unique_parameters(model.parameters()) if p.requires_grad]
    if not params:
        raise TunebenchError("this method has no trainable parameters; it cannot be trained")
    device = params[0].device
    opt = torch.optim.AdamW(
        _groups(model, params, hp.lr),
        lr=hp.lr,
        weight_decay=hp.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(hp))
    micro_batches = _micro_batches(model, train_ex, hp, seed, rng)
    # fp16 needs its gradients scaled (bf16 and fp32 do not); the master weights stay fp32
    scaler = torch.amp.GradScaler(device.type) if model.precision == "fp16" else None

    def one_step(step: int) -> tuple[float, int]:  # (mean loss, examples)
        losses, n = [], 0
        for _ in range(hp.grad_accum):
            idx, batch = next(micro_batches)
            model.train()  # after next(): the first batch caches frozen features in eval mode
            loss = model.loss(model(batch), batch)
            if not torch.isfinite(loss):
                raise TrainingFailed(f"loss is {loss.item()} at step {step + 1}")
            scaled = loss / hp.grad_accum
            (scaled if scaler is None else scaler.scale(scaled)).backward()
            losses.append(loss.item())
            n += len(idx)
        if scaler is not None:
            scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return sum(losses) / len(losses), n

    primary = task.metrics[0]
    best = {"key": (-math.inf, -math.inf, 0), "state": None, "step": 0, "dev": None}
    history, memory, seen = [], {}, 0
    bar = _bar(hp.steps, progress)
    start = time.perf_counter()
    for step in range(hp.steps):
        with accounting.phase("train"):
            if step == min(1, hp.steps - 1):  # the second step (optimizer state exists; a
                # one-step run: its only step, which creates that state under the probe)
                out = {}
                memory = peak_memory(
                    lambda s=step, o=out: o.update(r=one_step(s)), [model], opt, device
                )
                loss_value, n = out["r"]
            else:
                loss_value, n = one_step(step)
        seen += n
        bar.update(1)
        done = step + 1
        if done % hp.eval_every == 0 or done == hp.steps:
            with accounting.phase("dev"):
                ev = evaluate(model, task, dev_ex, train_ex, seed, hp.eval_batch_size)
            key = (ev.metrics[primary], -ev.loss, -done)  # ties: lower dev loss, then earlier
            history.append(
                {
                    "step": done,
                    "train_loss": loss_value,
                    "dev_loss": ev.loss,
                    **{f"dev_{k}": v for k, v in ev.metrics.items()},
                }
            )
            if key > best["key"]:
                best.update(
                    key=key,
                    step=done,
                    dev=ev.metrics,
                    state={id(p): p.detach().clone() for p in params},
                )
            bar.dev(done, primary, ev.metrics[primary])
            if report is not None:
                report(done, ev.metrics[primary])
    bar.close()
    seconds = time.perf_counter() - start
    with torch.no_grad():  # restore the best dev state
        for p in params:
            p.copy_(best["state"][id(p)])
    return TrainResult(best["step"], best["dev"], history, seconds, seen, memory)


def _groups(model, params: list, lr: float) -> list[dict]:
    """One group at the method's rate; a learned verbalizer that names its own rate
    (``head.learned_lr``, e.g. prototypes that start at random) gets a group of its own."""
    rate = getattr(model.head, "learned_lr", None)
    if not rate:
        return [{"params": params, "lr": lr}]
    own = {id(p) for p in model.head.learned.parameters()}
    groups = [
        {"params": [p for p in params if id(p) not in own], "lr": lr},
        {"params": [p for p in params if id(p) in own], "lr": rate},
    ]
    return [g for g in groups if g["params"]]


def _micro_batches(model, train_ex, hp: Hyper, seed: int, rng):
    """Endless shuffled, length-bucketed micro-batches, epoch after epoch. A frozen trunk is
    rendered and run once (its features cached); otherwise each epoch renders afresh (new
    demonstrations for methods that use them, as LM-BFF samples them)."""
    feats = None
    if model.trunk_frozen:
        items = data.encode_eval(model, train_ex, train_ex, seed)
        feats = _features(model, items, train_ex, hp.eval_batch_size)
    while True:
        if feats is None:
            items = data.encode(model, train_ex, train_ex, rng)
        order = data.train_order([len(e.ids) for e in items], hp.batch_size, rng)
        for idx, batch in data.batches(items, train_ex, order, model.pad_id):
            if feats is not None:
                batch["features"] = feats[idx]
            yield idx, batch


def _bar(total: int, progress: str | bool):
    """``progress``: "bar" (or True) on a terminal, "lines" (one per dev evaluation), False."""
    from bench.engine.progress import TrainProgress

    return TrainProgress(total, progress)
