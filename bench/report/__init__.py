"""Report: records in, tables and figures out. Reads record files only; never runs anything.

Holds: ``aggregate`` (the named aggregation protocol), ``published`` (published numbers in
``published.json``), ``predicted`` (predicted GPU peaks in ``predicted_memory.json``, written
by ``tunebench memory --json``), ``make`` (``make_report``: every output), and one module per
format: ``fmt`` (shared display rules), ``text`` (Markdown, CSV), ``latex``, ``html`` (with
``page.js``/``page.css``), ``figures``.
May import: ``bench.core`` and ``tasks`` (task metadata) only.
"""
