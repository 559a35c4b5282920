"""tunebench: few-shot adaptation benchmark harness (the harness package).

Layers, each a sub-package whose ``__init__`` says what it holds and may import; imports go
downward only (``tests/test_layers.py`` checks it):

    cli -> sweep -> run -> methods -> engine -> backbones, tasks -> core
    report -> core, tasks            (reads records only)
    benchmarks                       (scripts over every layer, like cli)
"""

__version__ = "0.1.0"
