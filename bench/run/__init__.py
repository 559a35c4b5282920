"""Run: one cell (backbone x task x method x K x seed) from split to record.

Holds: ``runner`` (search hook, build, train, test, ``run_cell``/``run_trial``), ``record``
(the run-record schema and environment), ``params`` (parameter counts without weights),
``memory`` (predicted peak memory of a training step, from configs alone).
May import: ``methods``, ``bench.engine``, ``bench.backbones``, ``bench.core``, ``tasks``.
"""
