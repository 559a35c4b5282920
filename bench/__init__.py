"""tunebench: few-shot adaptation benchmark harness (the harness package)."""

__version__ = "0.1.0"
