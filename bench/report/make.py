"""``make_report``: the run records under a results folder -> the leaderboard (Markdown, CSV,
HTML), the per-cell CSV, LaTeX tables and figures, all under that folder.

Output is a function of the records alone: rows and columns in a fixed order, no timestamps or
absolute paths, figures without dates, so the same records give byte-identical files. The
report owns ``tables/*.tex`` and ``figures/*.png|svg`` there: files it did not write this time
(e.g. of a backbone whose records are gone) are removed.
"""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import TunebenchError
from bench.core.io import atomic_write_bytes
from bench.report import figures, fmt, html, latex, text
from bench.report.aggregate import DEFAULT_DDOF, aggregate, load_records
from bench.report.published import load_published, matches

OWNED = {"tables": (".tex",), "figures": (".png", ".svg")}


def build_outputs(results_dir: Path, ddof: int = DEFAULT_DDOF) -> dict[str, bytes]:
    """Every output file's path (relative to ``results_dir``) and bytes."""
    loaded = load_records(results_dir)
    if not loaded.records:
        raise TunebenchError(
            f"no run records under {results_dir} (looked for *.json with schema tunebench.run/1"
            f"{f'; skipped {len(loaded.skipped)} other JSON files' if loaded.skipped else ''})"
        )
    agg = aggregate(loaded, ddof)
    sources = load_published()
    found = matches(agg, sources)
    out: dict[str, bytes] = {}
    rendered, md_figures = {}, {}
    for table in agg.tables:
        slug = fmt.table_slug(table)
        rendered[slug] = figures.render(table)
        for name, by_format in rendered[slug].items():
            for ext, data in by_format.items():
                out[f"figures/{slug}-{name}.{ext}"] = data
        md_figures[slug] = [
            (
                f"{name} figure, {table.backbone}, {table.setting.label}",
                f"figures/{slug}-{name}.png",
            )
            for name in rendered[slug]
        ]
        out[f"tables/{slug}-main.tex"] = latex.main_table(table, ddof).encode()
        out[f"tables/{slug}-efficiency.tex"] = latex.efficiency_table(table).encode()
    out["leaderboard.md"] = text.markdown(agg, md_figures, sources, found).encode()
    out["leaderboard.csv"] = text.leaderboard_csv(agg).encode()
    out["cells.csv"] = text.cells_csv(agg).encode()
    out["significance.csv"] = text.significance_csv(agg).encode()
    out["leaderboard.html"] = html.page(agg, rendered, sources, found).encode()
    return out


def make_report(results_dir: Path, ddof: int = DEFAULT_DDOF) -> list[Path]:
    """Write the report under ``results_dir``; return the paths of its files, sorted."""
    results_dir = Path(results_dir)
    outputs = build_outputs(results_dir, ddof)
    for folder, suffixes in OWNED.items():
        for stale in sorted((results_dir / folder).glob("*")):
            rel = stale.relative_to(results_dir).as_posix()
            if stale.is_file() and stale.suffix in suffixes and rel not in outputs:
                stale.unlink()
    paths = []
    for rel, data in sorted(outputs.items()):
        path = results_dir / rel
        if not (path.is_file() and path.read_bytes() == data):  # unchanged files keep mtimes
            atomic_write_bytes(path, data)
        paths.append(path)
    return paths
