"""Token and FLOP accounting: every pass through a trunk counts itself, once, where it runs.

``TaskModel.features`` calls ``account`` after each forward of the body; a cached feature
(a hit) costs nothing and counts nothing. What a pass adds to the active meters, under the
current phase (``train``, ``dev``, ``test:<set>``, ``search``, ...):

- ``tokens``: non-pad positions through the body; ``padded_tokens``: all of them (the batch is
  computed padded, so FLOPs are estimated on these). Positions an adapter prepends (soft
  prompts) are included; a prefix of keys/values is not (it is not run through the layers).
- ``flops``: 2·N per padded token forward, where N is the trunk's matmul parameters (the
  body's, LoRA's included, without embedding tables: those are look-ups). When a backward
  follows (grad enabled and the input embeddings or any trunk parameter need a gradient):
  +2·N for the activation gradients, +2·N_trained for the weight gradients of the trained
  trunk parameters; so a trained trunk costs 6·N per token, one frozen behind a trained
  input (prompt tuning, LoRA's frozen part) 4·N. Not counted: attention scores (2·L·T·H per
  token, ~1% at SST-2 lengths on SmolLM2), the heads (per example, C·W·H or H²), look-ups.

``TOTAL`` sees every pass of the process; ``Meter``s made with ``metering`` see the passes
made inside them (a trial, a test pass).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

HOW = (
    "forward 2*N per padded token (N: trunk matmul parameters, embeddings excluded); with a "
    "backward +2*N (activation gradients) +2*N_trained (weight gradients); attention scores "
    "and heads not counted"
)


@dataclass
class Tally:
    tokens: int = 0  # non-pad
    padded_tokens: int = 0
    flops: float = 0.0

    def add(self, other: Tally) -> None:
        self.tokens += other.tokens
        self.padded_tokens += other.padded_tokens
        self.flops += other.flops

    def minus(self, other: Tally) -> Tally:
        return Tally(
            self.tokens - other.tokens,
            self.padded_tokens - other.padded_tokens,
            self.flops - other.flops,
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "flops": float(self.flops)}


@dataclass
class Meter:
    phases: dict[str, Tally] = field(default_factory=dict)

    def add(self, phase: str, tally: Tally) -> None:
        self.phases.setdefault(phase, Tally()).add(tally)

    def total(self) -> Tally:
        out = Tally()
        for t in self.phases.values():
            out.add(t)
        return out

    def get(self, phase: str) -> Tally:
        return self.phases.get(phase, Tally())


TOTAL = Meter()
_METERS: list[Meter] = []
_PHASE: ContextVar[str] = ContextVar("compute_phase", default="other")


@contextlib.contextmanager
def phase(name: str):
    token = _PHASE.set(name)
    try:
        yield
    finally:
        _PHASE.reset(token)


@contextlib.contextmanager
def metering(meter: Meter):
    _METERS.append(meter)
    try:
        yield meter
    finally:
        _METERS.remove(meter)


def matmul_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Parameters that multiply (each tensor once), embedding tables left out."""
    lookups = {
        id(p) for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    seen, n = set(), 0
    for p in module.parameters():
        if id(p) in seen or id(p) in lookups or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        n += p.numel()
    return n


def account(model, mask: torch.Tensor, shift: int, backward: bool) -> Tally:
    """Count one forward of ``model``'s trunk over ``mask`` (B, T) (+``shift`` prepended).
    Forwards on fake tensors (``tunebench memory``'s estimates) do no work and count nothing."""
    if isinstance(mask, FakeTensor):
        return Tally(0, 0)
    n = model.flop_parameters
    rows, width = mask.shape
    tally = Tally(int(mask.sum()) + shift * rows, rows * (width + shift))
    per_token = 2 * n
    if backward:
        per_token += 2 * n + 2 * matmul_parameters(model.body, trainable_only=True)
    tally.flops = float(per_token) * tally.padded_tokens
    where = _PHASE.get()
    for meter in (TOTAL, *_METERS):
        meter.add(where, tally)
    return tally
