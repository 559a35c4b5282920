"""Prompt machinery of the methods: soft-prompt modules and the searched prompts' helpers.

Holds: ``adapters`` (prompt vectors, P-tuning's encoders, key/value prefixes), ``search``
(answer-position scores and metrics shared by AutoPrompt and LM-BFF's searches).
May import: ``bench.engine``, ``bench.backbones``, ``bench.core``, ``tasks``.
"""
