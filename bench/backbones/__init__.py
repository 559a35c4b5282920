"""Backbones: the catalog of pretrained models and how each is loaded offline or from the hub.

Holds: ``catalog`` (names, kinds, loading, parameter counts on the meta device), ``tinytok``
(the tiny random backbones' tokenizers), ``cache`` (one pristine copy per process, fresh
copies for each build).
May import: ``bench.core``.
"""
