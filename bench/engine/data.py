"""Examples -> padded batches, with length bucketing; and the cache of frozen features.

Padding is on the right and every sequence carries the position its head reads, so the
padding side and the company a sequence keeps in a batch do not change its prediction.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from bench.engine.prompts import Encoded
from tasks import Example


def encode(model, examples: Sequence[Example], pool: Sequence[Example], rng) -> list[Encoded]:
    """Render ``examples``; demonstrations (if the method uses them) come from ``pool``."""
    enc = model.encoder
    return [enc.encode(ex, enc.choose_demos(ex, pool, rng)) for ex in examples]


def eval_rng(seed: int, index: int) -> np.random.Generator:
    """Demonstrations at inference are fixed per example: a generator per (seed, index)."""
    return np.random.default_rng([seed, index])


def encode_eval(model, examples: Sequence[Example], pool: Sequence[Example], seed: int):
    enc = model.encoder
    return [
        enc.encode(ex, enc.choose_demos(ex, pool, eval_rng(seed, i)))
        for i, ex in enumerate(examples)
    ]


def collate(items: Sequence[Encoded], examples: Sequence[Example], pad_id: int) -> dict:
    width = max(len(e.ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, e in enumerate(items):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        mask[row, : len(e.ids)] = 1
    batch = {
        "input_ids": ids,  # (B, T)
        "attention_mask": mask,  # (B, T)
        "position": torch.tensor([e.position for e in items]),  # (B,)
        "label": torch.tensor([ex.label for ex in examples]),  # (B,)
        "score": torch.tensor([ex.score if ex.score is not None else 0.0 for ex in examples]),
    }
    if any(e.pseudo for e in items):  # a template with pseudo tokens: where they are, (B, N)
        batch["pseudo"] = torch.tensor([e.pseudo for e in items])
    return batch


def train_order(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort within windows of 50 batches, cut,
    then shuffle the batches (less padding, order still random)."""
    order = rng.permutation(len(lengths)).tolist()
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_order(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batches(items, examples, order, pad_id) -> Iterator[tuple[list[int], dict]]:
    for idx in order:
        yield idx, collate([items[i] for i in idx], [examples[i] for i in idx], pad_id)


class FeatureCache:
    """Hidden states of a frozen trunk, computed once per (backbone, rendering, examples) and
    reused by every trial, seed and method that reads the same thing (bounded, LRU)."""

    def __init__(self, max_entries: int = 64):
        self.max_entries = max_entries
        self._store: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key, compute):
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        value = compute()
        self._store[key] = value
        if len(self._store) > self.max_entries:
            self._store.popitem(last=False)
        return value

    def clear(self) -> None:
        self._store.clear()


FEATURES = FeatureCache()
