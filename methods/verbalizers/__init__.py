"""Verbalizers: how label words (or learned vectors) become class scores at the answer.

Holds: ``registry`` (manual, kpt, proto, soft and ``get_verbalizer``), ``kpt`` (KPT's word
lists, refinement and calibration), ``protoverb`` (ProtoVerb's prototypes and losses).
May import: ``bench.engine``, ``bench.backbones``, ``bench.core``, ``tasks``.
"""
