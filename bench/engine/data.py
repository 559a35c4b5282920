"""Examples -> padded batches, with length bucketing; and the cache of frozen features
(in memory and on disk, keyed by what determines them).

Padding is on the right and every sequence carries the position its head reads, so the
padding side and the company a sequence keeps in a batch do not change its prediction.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from bench.core.io import atomic_write_bytes
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
    """Hidden states of a frozen trunk, computed once per key (``feature_key``: backbone,
    weights, precision, rendered inputs) and reused by every trial, seed and method that
    reads the same thing: in memory (bounded, LRU) and, once ``use_directory`` is set (a
    sweep: ``<results>/cache/features``), on disk for every later process and worker.

    A disk entry is a safetensors file with the key and the sha256 of the tensor's bytes in
    its metadata; one that does not load, or whose key, row count or checksum disagree, is
    recomputed and replaced, never used. A worker computing an entry holds an ``flock`` on
    ``<entry>.lock``; another that wants it waits, then loads what the first wrote.
    """

    def __init__(self, max_entries: int = 64, directory: Path | None = None):
        self.max_entries = max_entries
        self.directory = Path(directory) if directory else None
        self._store: OrderedDict = OrderedDict()
        self.hits = self.misses = 0  # in memory
        self.disk_hits = self.rejected = 0  # loaded from disk; disk entries refused

    def use_directory(self, directory: Path | None) -> None:
        self.directory = Path(directory) if directory else None

    def get(self, key: str, compute: Callable[[], torch.Tensor], rows: int | None = None):
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        value = compute() if self.directory is None else self._from_disk(key, compute, rows)
        self._store[key] = value
        if len(self._store) > self.max_entries:
            self._store.popitem(last=False)
        return value

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.safetensors"

    def _from_disk(self, key: str, compute, rows: int | None) -> torch.Tensor:
        path = self.path(key)
        value = self._load(path, key, rows)
        if value is not None:
            return value
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_suffix(".lock")):
            value = self._load(path, key, rows, quiet=True)  # written meanwhile by a worker?
            if value is not None:
                return value
            value = compute()
            _save(path, key, value)
        return value

    def _load(self, path: Path, key: str, rows: int | None, quiet=False) -> torch.Tensor | None:
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                value = f.get_tensor("features")
            ok = (
                meta.get("key") == key
                and meta.get("sha256") == _digest(value)
                and (rows is None or value.shape[0] == rows)
            )
        except Exception:  # noqa: BLE001 - any unreadable entry is recomputed
            ok = False
        if not ok:
            self.rejected += not quiet
            return None
        self.disk_hits += 1
        return value

    def clear(self) -> None:
        self._store.clear()


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(-1).view(torch.uint8).numpy()).hexdigest()


def _save(path: Path, key: str, value: torch.Tensor) -> None:
    value = value.detach().cpu().contiguous()
    blob = save({"features": value}, metadata={"key": key, "sha256": _digest(value)})
    atomic_write_bytes(path, blob)


@contextlib.contextmanager
def _locked(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


FEATURES = FeatureCache()

# --- what a frozen trunk's features depend on ------------------------------------------------

KEY_FORMAT = "tunebench.features/1"
_PRISTINE_DIGESTS: dict[tuple[str, str], str] = {}


def feature_key(model, items: Sequence[Encoded]) -> str:
    """sha256 of exactly what determines a frozen trunk's features: the format of this key,
    torch's version, the device type and precision they are computed in, the body's class and
    config, its weights and the adapter's (by content), how the head reads the states
    (pooling), and the rendered inputs (ids, read positions, pseudo-token slots)."""
    device = model.body.get_input_embeddings().weight.device
    parts = {
        "format": KEY_FORMAT,
        "torch": torch.__version__,
        "device": device.type,
        "precision": model.precision,
        "backbone": model.backbone_name,
        "body": type(model.body).__name__,
        "config": model.body.config.to_json_string(use_diff=False),
        "weights": trunk_digest(model),
        "adapter": type(model.adapter).__name__,
        "pooling": getattr(model, "pooling", None),  # mean and [CLS] read the same rendering
        "inputs": [[list(e.ids), e.position, list(e.pseudo)] for e in items],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def trunk_digest(model) -> str:
    """sha256 over the trunk's tensors by name (body, then adapter). A body tensor equal to the
    pristine backbone's (a frozen copy: the usual case) reuses that tensor's digest, computed
    once per process; kept on the model until a tensor changes in place."""
    tensors = [("body." + n, t) for n, t in model.body.state_dict(keep_vars=True).items()]
    tensors += [("adapter." + n, t) for n, t in model.adapter.state_dict(keep_vars=True).items()]
    versions = tuple(t._version for _, t in tensors)
    memo = getattr(model, "_trunk_digest", None)
    if memo is not None and memo[0] == versions:
        return memo[1]
    pristine = _pristine_state(model.backbone_name)
    digest = hashlib.sha256()
    for name, t in tensors:
        digest.update(name.encode())
        digest.update(_tensor_digest(model.backbone_name, name, t.detach(), pristine).encode())
    model._trunk_digest = (versions, digest.hexdigest())
    return model._trunk_digest[1]


def _pristine_state(name: str) -> dict:
    from bench.backbones.cache import pristine_backbone

    try:
        body = pristine_backbone(name).model.base_model
    except Exception:  # noqa: BLE001 - a backbone not in the catalog: hash every tensor
        return {}
    return {"body." + n: t for n, t in body.state_dict().items()}


def _tensor_digest(backbone: str, name: str, t: torch.Tensor, pristine: dict) -> str:
    t = t.cpu()
    ref = pristine.get(name)
    same = ref is not None and ref.shape == t.shape and ref.dtype == t.dtype and torch.equal(ref, t)
    if same and (backbone, name) in _PRISTINE_DIGESTS:
        return _PRISTINE_DIGESTS[(backbone, name)]
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.contiguous().view(-1).view(torch.uint8).numpy())
    if same:
        _PRISTINE_DIGESTS[(backbone, name)] = h.hexdigest()
    return h.hexdigest()
