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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.model import VerbalizerHead


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

VERBALIZERS: dict[str, Verbalizer] = {v.name: v for v in (MANUAL,)}


def register(v: Verbalizer) -> None:
    if v.name in VERBALIZERS:
        raise ValueError(f"verbalizer {v.name!r} is registered twice")
    VERBALIZERS[v.name] = v


def get_verbalizer(name: str) -> Verbalizer:
    if name not in VERBALIZERS:
        from bench.errors import unknown

        raise unknown("verbalizer", name, VERBALIZERS)
    return VERBALIZERS[name]
