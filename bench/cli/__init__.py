"""Command line: ``tunebench`` and ``python -m bench``. Parses, checks, calls down.

Holds: ``app`` (the command registry, ``main``, tasks/backbones/splits commands),
``commands`` (run, params, show, methods), ``sweep_commands`` (sweep, reproduce),
``report_commands`` (report), ``data_commands`` (data fetch, data verify),
``memory_commands`` (memory), ``worker_commands`` (worker, pull: sweeps on PostgreSQL).
May import: every layer.
"""

from bench.cli.app import main

__all__ = ["main"]
