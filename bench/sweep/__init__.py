"""Sweep: profiles crossed into cells, each searched with Optuna, claimed, resumed.

Holds: ``profile`` (the TOML profiles in ``profiles/`` and their plans), ``search`` (per-cell
Optuna studies, grid mode, tie rule), ``claims`` (which worker runs which cell), ``driver``
(running a sweep: state of each cell, records, estimates), ``db`` and ``worker`` (a sweep on
PostgreSQL: cell leases with heartbeats, records in the database, the worker loop).
May import: ``bench.run`` and everything below it.
"""
