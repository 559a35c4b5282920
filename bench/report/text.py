"""The leaderboard as Markdown and CSV, and the long per-cell CSV (every statistic of every cell).

Text that comes from records (method labels, profile and backbone names, errors, paths) is
untrusted, so every exported cell is made inert for the programs that open these files:

- **CSV** (OWASP's rule against formula injection): a cell that begins with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return gets a leading ``'`` so a spreadsheet shows it as text. A cell
  that is wholly a plain decimal number (``-1.50``, ``+3``, ``2.5e-3``; a CoLA MCC or a
  difference can be negative) is data and is left as written: no spreadsheet reads it as a
  formula.
- **Markdown**: in every table cell ``&``, ``<`` and ``>`` become entities (no raw HTML reaches a
  renderer), ``|`` is escaped and a line break becomes ``<br>`` (a row stays one row); text from
  records also has Markdown's own punctuation (``\\ ` * _ ~ [ ]``) backslash-escaped, so
  it can neither format nor link.
"""

from __future__ import annotations

import csv
import io
import re

from bench.report import budget, fmt, predicted, significance, training
from bench.report.aggregate import Aggregate, Column, Table, column_key
from bench.report.published import Match, Source

_MD_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|"}
_MD_PUNCT = re.compile(r"([\\`*_~\[\]])")  # emphasis, code, strike-through, links
_NEWLINE = re.compile(r"\r\n|\r|\n")


def _md_escape(text: str) -> str:
    """A Markdown table cell made inert: HTML characters as entities, ``|`` escaped, line
    breaks as ``<br>``."""
    text = "".join(_MD_HTML.get(ch, ch) for ch in str(text))
    return _NEWLINE.sub("<br>", text)


def md_text(text: str) -> str:
    """Text from a record (a label, a name, a path) as Markdown that shows it literally: its
    Markdown punctuation backslash-escaped (HTML and line breaks are left to ``_md_escape``,
    which every cell goes through; outside tables use ``md_line``)."""
    return _MD_PUNCT.sub(r"\\\1", str(text))


def md_line(text: str) -> str:
    """Record text outside a table (headings, notes): escaped as a cell is, and literal."""
    return _md_escape(md_text(text))


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md_escape(c) for c in cells) + " |"


EFFICIENCY_HEADERS = [
    "Trainable params",
    "% of backbone",
    "Peak memory",
    "Predicted peak (GPU, fp32 / bf16)",
    "Train time",
    "Trials/seed",
]


def efficiency_cells(eff: dict) -> list[str]:
    return [
        fmt.params(eff["trainable"]),
        fmt.pct(eff["pct"]),
        fmt.mib(eff["peak_bytes"]),
        fmt.predicted(eff["predicted"]),
        fmt.seconds(eff["train_s"]),
        fmt.trials(eff["trials"]),
    ]


def _md_table(table: Table, ddof: int, figures: list[str]) -> list[str]:
    with_avg = fmt.has_average(table)
    headers = ["Method", "Family", *(md_text(fmt.column_header(c)) for c in table.columns)]
    headers += ["Avg."] if with_avg else []
    out = [f"## {md_line(table.setting.label)} — backbone {md_line(table.backbone)}", ""]
    out += [md_line(fmt.table_caption(table, ddof)), ""]
    out += [_md_row(headers + EFFICIENCY_HEADERS)]
    out += ["|" + "---|" * 2 + "---:|" * (len(headers) - 2 + len(EFFICIENCY_HEADERS))]
    best = {c: fmt.best_rows(table, c) for c in table.columns}
    best_avg = fmt.best_average(table)
    same_as_best = significance.not_significant(table)
    for row in table.rows:
        cells = [md_text(row.method_label), md_text(row.family)]
        for col in table.columns:
            cell = row.cells[col]
            text = fmt.cell_text(cell)
            text = f"**{text}**" if row.method_label in best[col] else text
            if (row.method_label, col) in same_as_best:
                text += " " + significance.NOT_SIGNIFICANT
            text += training.cell_marker(row, col)
            cells.append(text + (f" [{cell.marker}]" if cell.marker else ""))
        if with_avg:
            avg = fmt.score(row.average)
            avg = f"**{avg}**" if row.method_label in best_avg else avg
            cells.append(avg + (f" [{row.average_marker}]" if row.average_marker else ""))
        out.append(_md_row(cells + efficiency_cells(row.efficiency())))
    out.append("")
    out += _md_budgets(table) + _md_significance(table) + training.markdown(table)
    out += [f"![{md_line(alt)}]({path})" for alt, path in figures]
    return out + [""]


MATCH_HEADERS = [
    "Source",
    "Row",
    "Setting",
    "Backbone",
    "Task",
    "Published",
    "Ours",
    "Ours \u2212 published",
    "Same protocol",
    "Verified",
]


def match_rows(found: list[Match]) -> list[list[str]]:
    """Published values that have a cell of ours, with the difference (points x100)."""
    rows = []
    for m in found:
        spread = "" if m.spread is None else f" ({m.spread:.1f})"
        ours = fmt.cell_text(m.cell) + (f" [{m.cell.marker}]" if m.cell.marker else "")
        rows.append(
            [
                m.source.id,
                m.row.row,
                m.setting.label,
                m.row.backbone,
                m.column.label,
                f"{m.value:.1f}{spread}",
                ours,
                fmt.DASH if m.difference is None else f"{m.difference:+.1f}",
                "yes" if m.same_protocol else "no (seeds differ or incomplete)",
                "yes" if m.row.verified else "unverified",
            ]
        )
    return rows


NO_MATCH = (
    "No cell of ours matches a published one yet: backbone, method, K, task, test set and "
    "metric must all match. The published tables follow for reference."
)


def source_table(src: Source) -> tuple[list[str], list[list[str]]]:
    """A published table in the paper's layout, with our method names and a verified flag."""
    headers = ["Row", "Our method", "Backbone", "K", "Trainable params"]
    headers += [c.label for c in src.columns] + ["Verified"]
    rows = []
    for r in src.rows:
        values = [
            "not transcribed"
            if v is None
            else f"{v[0]:.1f}" + ("" if v[1] is None else f" ({v[1]:.1f})")
            for v in r.values
        ]
        k = "full" if r.k is None else str(r.k)
        params = fmt.DASH if r.trainable_params is None else fmt.params(r.trainable_params)
        rows.append(
            [r.row, r.method_label or fmt.DASH, r.backbone, k, params, *values]
            + ["yes" if r.verified else "unverified"]
        )
    return headers, rows


def _md_published(sources: list[Source], found: list[Match]) -> list[str]:
    out = ["## Published numbers beside ours", ""]
    if found:
        out += [_md_row(MATCH_HEADERS), "|" + "---|" * 5 + "---:|" * 3 + "---|" * 2]
        out += [_md_row([*r[:2], md_text(r[2]), md_text(r[3]), *r[4:]]) for r in match_rows(found)]
    else:
        out.append(NO_MATCH)
    out.append("")
    for src in sources:
        out += [f"### {src.citation}", "", f"<{src.url}>. Protocol: {src.protocol}"]
        out += ["", f"Spread: {src.spread}. Read from: {src.read_from}", ""]
        headers, rows = source_table(src)
        out += [_md_row(headers), "|---|---|---|---|---:|" + "---:|" * len(src.columns) + "---|"]
        out += [_md_row(r) for r in rows] + [""]
    return out


def markdown(agg: Aggregate, figures: dict[str, list[tuple[str, str]]], sources, found) -> str:
    n_ok = sum(r.ok for r in agg.records)
    lines = [
        "# tunebench leaderboard",
        "",
        f"Made by `tunebench report` from {len(agg.records)} run records ({n_ok} finished, "
        f"{len(agg.records) - n_ok} failed) under the results folder"
        + (f"; {len(agg.skipped)} other JSON files skipped" if agg.skipped else "")
        + ". Generated: edit the records, not this file, and re-run `make report`.",
        "",
        "## How the numbers are made",
        "",
        *(f"- {line}" for line in fmt.protocol_lines(agg)),
        "",
    ]
    for table in agg.tables:
        lines += _md_table(table, agg.ddof, figures.get(fmt.table_slug(table), []))
    lines += _md_published(sources, found)
    lines += ["## Notes", ""]
    lines += [f"- {md_line(note)}" for note in memory_notes(agg)]
    lines += [f"- {md_line(note)}" for note in predicted_notes(agg)]
    lines += [f"- {md_line(note)}" for note in agg.notes]
    return "\n".join(lines).rstrip() + "\n"


def _md_budgets(table: Table) -> list[str]:
    """For a table of training budgets: each column's methods by budget (``budget.pivot``)."""
    out = []
    for col in table.columns:
        found = budget.pivot(table, col)
        if found is None:
            return []
        headers, rows = found
        out += [f"{md_text(fmt.column_header(col))} by training budget: test x100, mean (std).", ""]
        out += [_md_row(headers), "|---|" + "---:|" * (len(headers) - 1)]
        for r in rows:  # method labels come from records: escaped, wherever they stand
            cells = r[1:] if r[0] != budget.RANKING else [md_text(c) for c in r[1:]]
            out.append(_md_row([md_text(r[0]), *cells]))
        out.append("")
    return out


def _md_significance(table: Table) -> list[str]:
    """The table's paired comparisons (``bench.report.significance``), labels escaped."""
    rows = significance.table_rows(table)
    if not rows:
        return []
    out = ["Paired differences (points x100). " + significance.caption(), ""]
    out += [_md_row(significance.HEADER), significance.ALIGN]
    out += [_md_row([md_text(r[0]), md_text(r[1]), *r[2:]]) for r in rows]
    return out + [""]


def predicted_notes(agg: Aggregate) -> list[str]:
    """The predicted-memory note, when some row of the report has a prediction."""
    rows = (row for table in agg.tables for row in table.rows)
    return [predicted.note()] if any(row.efficiency()["predicted"] for row in rows) else []


def memory_notes(agg: Aggregate) -> list[str]:
    """One note per device on how peak memory was measured: the clauses (``; ``-separated) every
    record on that device shares, then each other clause once, with the methods it applies to."""
    by_device: dict[str, dict[str, set[str]]] = {}
    for r in agg.records:
        how = r.data["memory"].get("how") if r.ok else None
        if how:
            device = str(r.data["memory"].get("device"))
            by_device.setdefault(device, {}).setdefault(how, set()).add(r.cell["method_label"])
    notes = []
    for device, hows in sorted(by_device.items()):
        clauses = {h: [c.strip() for c in h.split(";")] for h in hows}
        common = [c for c in clauses[min(hows)] if all(c in cs for cs in clauses.values())]
        extra: dict[str, set[str]] = {}
        for h, labels in hows.items():
            for c in clauses[h]:
                if c not in common:
                    extra.setdefault(c, set()).update(labels)
        prefix = f"{device}: "
        common = [c[len(prefix) :] if c.lower().startswith(prefix.lower()) else c for c in common]
        note = f"Peak memory ({device}): " + "; ".join(common)
        for c, labels in sorted(extra.items()):
            note += f". For {', '.join(sorted(labels))}: {c}"
        notes.append(note)
    return notes


def all_columns(agg: Aggregate) -> list[Column]:
    seen = {c for t in agg.tables for c in t.columns}
    return sorted(seen, key=column_key)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value) -> str:
    """One CSV cell, neutralised against formula injection (OWASP): text beginning with
    ``= + - @``, a tab or a carriage return gets a leading ``'``; a plain number is kept."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _csv_text(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([csv_cell(v) for v in row] for row in rows)
    return buf.getvalue()


def _num(x: float | None, scale: float = 100.0, digits: int = 2) -> str:
    return "" if x is None else f"{scale * x:.{digits}f}"


def leaderboard_csv(agg: Aggregate) -> str:
    """One row per (setting, backbone, method); per column: mean and std x100, seeds, whether
    the score differs significantly from the column's best (``bench.report.significance``) and
    how many seeds were under-trained (``bench.report.training``)."""
    columns = all_columns(agg)
    header = ["profile", "k", "precision", "backbone", "method_label", "method", "family"]
    for c in columns:
        name = f"{c.label} {c.metric} x100"
        header += [f"{name} mean", f"{name} std (ddof={agg.ddof})", f"{c.label} seeds"]
        header += [f"{c.label} vs best", f"{c.label} under-trained seeds"]
    with_avg = len(columns) > 1  # one column: its average would repeat it
    header += ["average x100", "average note"] if with_avg else []
    header += ["trainable params", "trainable % of backbone"]
    header += ["peak memory MiB", "train time s", "trials per seed"]
    rows = [header]
    for t in agg.tables:
        found = significance.comparisons(t)
        verdicts = {(c.row, c.column): c.significant for c in found["best"]}
        for r in t.rows:
            line = [t.setting.profile, t.setting.k, t.setting.precision, t.backbone]
            line += [r.method_label, r.method, r.family]
            for c in columns:
                cell = r.cells.get(c)
                if cell is None:
                    line += ["", "", "", "", ""]
                    continue
                seeds = cell.marker or f"{cell.stats.n}/{len(cell.expected)} seeds"
                line += [_num(cell.stats.mean), _num(cell.stats.std), seeds]
                line += [_verdict(verdicts, r.method_label, c, cell.stats.mean)]
                n, of = training.counts(r, c)
                line += [f"{n}/{of}" if of else ""]
            eff = r.efficiency()
            line += [_num(r.average), r.average_marker] if with_avg else []
            line += ["" if eff["trainable"] is None else str(int(round(eff["trainable"])))]
            line += [_num(eff["pct"], 1.0, 4), _num(eff["peak_bytes"], 1 / 2**20, 1)]
            line += [_num(eff["train_s"], 1.0, 2), fmt.trials(eff["trials"])]
            rows.append(line)
    return _csv_text(rows)


def _verdict(verdicts: dict, label: str, col: Column, mean: float | None) -> str:
    """'best', 'significant', 'not significant' or 'n/a' (no test applies) against the column's
    best; '' for a cell without a mean."""
    if mean is None:
        return ""
    if (label, col) not in verdicts:
        return "best"
    return {True: "significant", False: "not significant", None: "n/a"}[verdicts[(label, col)]]


def significance_csv(agg: Aggregate) -> str:
    """Every paired comparison of every table (``bench.report.significance.table_rows``), with
    the table's setting and backbone; differences in points x100."""
    rows = [["profile", "k", "precision", "backbone", *significance.HEADER]]
    for t in agg.tables:
        for r in significance.table_rows(t):
            rows.append([t.setting.profile, t.setting.k, t.setting.precision, t.backbone, *r])
    return _csv_text(rows)


def cells_csv(agg: Aggregate) -> str:
    """Every cell of every table with every statistic of the protocol, raw scores (0-1)."""
    header = "profile k precision backbone method_label method family task partial test_set metric"
    header += " status"
    header += " seeds_expected seeds_ok seeds_failed seeds_missing ddof mean std median min max"
    header += " trials_per_seed scores_by_seed failed_errors"
    rows = [header.split()]
    for t in agg.tables:
        for r in t.rows:
            for c in t.columns:
                cell, st = r.cells[c], r.cells[c].stats
                scores = ";".join(
                    f"{s.seed}:{s.score:.6f}" for s in cell.seeds if s.score is not None
                )
                errors = " | ".join(f"{s.seed}: {s.error[:200]}" for s in cell.seeds if s.error)
                rows.append(
                    [t.setting.profile, t.setting.k, t.setting.precision, t.backbone]
                    + [r.method_label, r.method, r.family]
                    + [c.task, str(c.partial).lower(), c.test_set, c.metric, cell.status]
                    + [len(cell.expected), st.n, cell.count("failed"), cell.count("missing")]
                    + [agg.ddof]
                    + [_num(v, 1.0, 6) for v in (st.mean, st.std, st.median, st.min, st.max)]
                    + [fmt.trials(cell.trials), scores, errors]
                )
    return _csv_text(rows)
