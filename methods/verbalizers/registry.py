"""Verbalizers: how the hidden state at the answer position becomes class scores, an axis of
its own beside the method (option ``verbalizer`` of every method that reads the LM head).

A ``Verbalizer`` builds the head that ``verbalizer_model`` puts on the answer position:
``head(model, encoder, task, hp) -> nn.Module`` mapping (B, H) to class scores (B, C). A head
may also have

- parameters under ``learned`` (e.g. per-word weights, label vectors, prototypes): they train
  whenever the method trains, whatever else the method freezes (``set_trainable``);
- ``describe() -> dict``: what the record keeps (the word lists it used, ...);
- ``auxiliary_loss(labels) -> tensor``: added to the cross-entropy in training (it reads what
  the last forward pass saw).

``search(backbone, task, split, hp) -> dict`` (optional) runs before the build on the K-shot
data, like a method's search (e.g. KPT's word lists and their refinement); what it returns
is merged into ``hp["found"]``. ``needs_training``: refused on methods that do not train.
A head whose learned parameters start far from where they should end (random prototypes, a
word weighting) may set ``learned_lr``: the trainer gives ``head.learned`` that rate in a
parameter group of its own (each such verbalizer has an option ``<name>_lr``; 0 = the method's).

Registered: ``manual`` (one word per class), ``kpt`` (several words per class from the
backbone's embedding neighbours, refined and calibrated, weighted; ``methods.verbalizers.kpt``), ``proto``
(ProtoVerb's prototypes; ``methods.verbalizers.protoverb``) and ``soft`` (WARP-style label vectors, below).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bench.engine.model import VerbalizerHead, lm_transform
from methods.verbalizers import kpt, protoverb


@dataclass(frozen=True)
class Verbalizer:
    name: str
    summary: str
    head: Callable  # (model, encoder, task, hp) -> nn.Module, (B, H) -> (B, C)
    search: Callable | None = None  # (backbone, task, split, hp) -> found dict
    search_keys: tuple[str, ...] = ()
    needs_training: bool = False
    defaults: dict | None = None  # the verbalizer's own options (added to LM-head methods)


def _manual_head(model, encoder, task, hp):
    return VerbalizerHead(model, encoder.word_ids)


MANUAL = Verbalizer(
    name="manual",
    summary="one hand-written label word per class (the task's prompt), read on the LM head",
    head=_manual_head,
)


class SoftHead(nn.Module):
    """WARP-style: trainable label vectors in place of the label words' output rows, (C, H)
    (and their output biases, where the LM head has biases), started from those rows, read
    through the same LM transform, so before training it scores exactly as ``manual`` does."""

    def __init__(self, model: nn.Module, word_ids, words=()):
        super().__init__()
        self.transform = lm_transform(model)
        decoder = model.get_output_embeddings()
        ids = torch.tensor(list(word_ids), device=decoder.weight.device)  # (C,)
        rows = {"vectors": nn.Parameter(decoder.weight.detach()[ids].clone())}
        if decoder.bias is not None:
            rows["bias"] = nn.Parameter(decoder.bias.detach()[ids].clone())
        self.learned = nn.ParameterDict(rows)
        self.start = {"words": list(words), "ids": list(word_ids)}

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, C)
        logits = self.transform(h) @ self.learned["vectors"].T
        return logits + self.learned["bias"] if "bias" in self.learned else logits

    def describe(self) -> dict:
        return {"name": "soft", "initialised_from": self.start}


def _with_rate(head: nn.Module, rate: float) -> nn.Module:
    head.learned_lr = rate or None
    return head


def _kpt_head(model, encoder, task, hp):
    return _with_rate(kpt.make_head(model, encoder, task, hp), hp["kpt_lr"])


def _proto_head(model, encoder, task, hp):
    head = protoverb.ProtoHead(
        model, encoder.word_ids, task.num_labels, hp["proto_dim"], hp["proto_temp"], hp["proto_mix"]
    )
    return _with_rate(head, hp["proto_lr"])


def _soft_head(model, encoder, task, hp):
    head = SoftHead(model, encoder.word_ids, encoder.r.prompt.words)
    return _with_rate(head, hp["soft_lr"])


KPT = Verbalizer(
    name="kpt",
    summary="KPT: label words per class from the backbone's embedding neighbours, refined on "
    "the K-shot inputs (prior, relevance), calibrated by the prior, learned weights",
    head=_kpt_head,
    search=kpt.search,
    search_keys=kpt.SEARCH_KEYS + ("demos_per_label",),
    defaults=kpt.DEFAULTS,
)
PROTO = Verbalizer(
    name="proto",
    summary="ProtoVerb: learned class prototypes in the answer-position hidden space "
    "(contrastive losses), alone or mixed with the manual words",
    head=_proto_head,
    needs_training=True,
    defaults=protoverb.DEFAULTS,
)
SOFT = Verbalizer(
    name="soft",
    summary="WARP-style trainable label vectors in place of the label words' output rows",
    head=_soft_head,
    needs_training=True,
    defaults={"soft_lr": 1e-3},  # the label vectors' learning rate (0: the method's)
)

VERBALIZERS: dict[str, Verbalizer] = {v.name: v for v in (MANUAL, KPT, PROTO, SOFT)}


def register(v: Verbalizer) -> None:
    if v.name in VERBALIZERS:
        raise ValueError(f"verbalizer {v.name!r} is registered twice")
    VERBALIZERS[v.name] = v


def get_verbalizer(name: str) -> Verbalizer:
    if name not in VERBALIZERS:
        from bench.core.errors import unknown

        raise unknown("verbalizer", name, VERBALIZERS)
    return VERBALIZERS[name]
