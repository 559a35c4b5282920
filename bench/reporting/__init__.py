"""The report's output formats: shared display rules (``fmt``), Markdown and CSV, LaTeX, the
HTML page, figures. ``bench.report.make_report`` drives them."""
