"""Engine: the one model shape, the one training loop, and what they measure.

Holds: ``prompts`` (templates rendered into token ids; the prompt a method reads), ``data``
(encoding, batching, the frozen-feature cache), ``model`` (``TaskModel``: input adapter ->
backbone body -> state at one position -> head), ``train`` (the loop, evaluation),
``measure`` (parameter counts, peak memory, environment), ``precision`` (fp32 | bf16 | fp16 |
auto and the autocast a trunk runs under), ``compute`` (token and FLOP accounting).
May import: ``bench.core``, ``bench.backbones``, ``tasks``.
"""
