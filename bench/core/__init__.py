"""Core: the pieces every layer may use and that use nothing of the project.

Holds: ``errors`` (the user-facing error types, one-line messages), ``io`` (atomic writes),
``metrics`` (metric metadata and GLUE metrics, declared once).
May import: the standard library and third-party packages only.
"""
