"""Loaded backbones kept per process: one pristine copy per name, and fresh copies of it for
each build (a build may change weights; the pristine one never leaves this module)."""

from __future__ import annotations

import copy

import torch

from bench.backbones.catalog import Backbone, load_backbone

_PRISTINE: dict[str, Backbone] = {}


def pristine_backbone(name: str) -> Backbone:
    """The loaded backbone, never handed out itself: builds get copies."""
    if name not in _PRISTINE:
        _PRISTINE[name] = load_backbone(name)
    return _PRISTINE[name]


def fresh_backbone(name: str, device: torch.device) -> Backbone:
    b = pristine_backbone(name)
    return Backbone(b.spec, copy.deepcopy(b.model).to(device), b.tokenizer)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
