"""The leaderboard as one self-contained static page: the data in a table sortable by any column
and filterable by setting, backbone, family and task, the figures embedded as data URIs, the
script and style inline. A Content-Security-Policy forbids every fetch, so the page works (and
can only work) offline."""

from __future__ import annotations

import base64
from html import escape
from importlib import resources

from bench.report import budget, fmt, significance, text, training
from bench.report.aggregate import Aggregate, Cell, Row, Table
from bench.report.published import Match, Source

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _asset(name: str) -> str:
    return resources.files("bench.report").joinpath(name).read_text(encoding="utf-8")


def _options(select_id: str, label: str, values: list[str], attr: str | None) -> str:
    data = f' data-attr="{attr}"' if attr else ""
    opts = '<option value="">all</option>' + "".join(
        f'<option value="{escape(v)}">{escape(v)}</option>' for v in values
    )
    return f'<label>{label} <select id="{select_id}"{data}>{opts}</select></label>'


def _seed_title(cell: Cell) -> str:
    parts = []
    for s in cell.seeds:
        if s.score is not None:
            parts.append(f"seed {s.seed}: {fmt.score(s.score)}")
        else:
            parts.append(f"seed {s.seed}: {s.status}" + (f" ({s.error[:120]})" if s.error else ""))
    return "; ".join(parts)


def _score_td(cell: Cell, best: bool, task: str, same_as_best: bool, undertrained: str) -> str:
    """A score cell: ``same_as_best`` adds the not-significant mark, ``undertrained`` is
    ``training.cell_marker``'s text (or '')."""
    st = cell.stats
    value = "" if st.mean is None else f"{st.mean:.6f}"
    cls = "best" if best else ("none" if st.mean is None else "")
    marks = [significance.NOT_SIGNIFICANT] if same_as_best else []
    marks += [training.MARK] if undertrained else []
    marks += [cell.marker.split(";")[0]] if cell.marker else []
    mark = "".join(f'<span class="mark">{escape(m)}</span>' for m in marks)
    notes = [_seed_title(cell)]
    notes += ["not significantly different from the column's best"] if same_as_best else []
    notes += [undertrained.strip(" []")] if undertrained else []
    notes += [cell.marker] if cell.marker else []
    title = escape(" — ".join(notes))
    return (
        f'<td class="{cls}" data-task="{escape(task)}" data-value="{value}" title="{title}">'
        f"{escape(fmt.cell_text(cell))}{mark}</td>"
    )


def _row(table: Table, row: Row, columns, best: dict, best_avg: set[str], same: set) -> str:
    eff = row.efficiency()
    colour = fmt.family_colour(row.family)
    tds = [
        f'<td class="text">{escape(table.setting.label)}</td>',
        f'<td class="text">{escape(table.backbone)}</td>',
        f'<td class="text">{escape(row.method_label)}</td>',
        f'<td class="text"><span class="family" style="background:{colour}"></span>'
        f"{escape(row.family)}</td>",
    ]
    for col in columns:
        cell = row.cells.get(col)
        if cell is None:
            tds.append(f'<td data-task="{escape(col.task)}" data-value=""></td>')
        else:
            tds.append(
                _score_td(
                    cell,
                    row.method_label in best.get(col, ()),
                    col.task,
                    (row.method_label, col) in same,
                    training.cell_marker(row, col),
                )
            )
    if len(columns) > 1:
        avg = "" if row.average is None else f"{row.average:.6f}"
        cls = "best" if row.method_label in best_avg else ""
        mark = (
            f'<span class="mark">{escape(row.average_marker)}</span>' if row.average_marker else ""
        )
        tds.append(f'<td class="{cls}" data-value="{avg}">{fmt.score(row.average)}{mark}</td>')
    guess = (eff["predicted"] or {}).get("fp32")  # the predicted column sorts by fp32
    numbers = [eff["trainable"], eff["pct"], eff["peak_bytes"], guess, eff["train_s"]]
    for value, shown in zip(numbers, text.efficiency_cells(eff)):
        tds.append(f'<td data-value="{"" if value is None else value}">{escape(shown)}</td>')
    tds.append(f'<td class="text">{escape(fmt.trials(eff["trials"]))}</td>')
    data = (
        f'data-setting="{escape(table.setting.label)}" data-backbone="{escape(table.backbone)}" '
        f'data-family="{escape(row.family)}"'
    )
    return f"<tr {data}>" + "".join(tds) + "</tr>"


def _leaderboard(agg: Aggregate) -> list[str]:
    columns = text.all_columns(agg)
    th = ['<th class="text" data-type="text">Setting</th>']
    th += ['<th class="text" data-type="text">Backbone</th>']
    th += [
        '<th class="text" data-type="text">Method</th>',
        '<th class="text" data-type="text">Family</th>',
    ]
    for c in columns:
        higher = "true" if fmt.higher_is_better(c.metric) else "false"
        th.append(
            f'<th data-type="num" data-higher="{higher}" data-task="{escape(c.task)}">'
            f"{escape(fmt.column_header(c))}</th>"
        )
    if len(columns) > 1:  # one column: its average would repeat it
        th.append('<th data-type="num" data-higher="true">Avg.</th>')
    for name in text.EFFICIENCY_HEADERS[:-1]:
        th.append(f'<th data-type="num" data-higher="false">{escape(name)}</th>')
    th.append(f'<th class="text" data-type="text">{text.EFFICIENCY_HEADERS[-1]}</th>')
    rows = []
    for t in agg.tables:
        best = {c: fmt.best_rows(t, c) for c in t.columns}
        best_avg = fmt.best_average(t)
        same = significance.not_significant(t)
        rows += [_row(t, r, columns, best, best_avg, same) for r in t.rows]
    settings = sorted({t.setting.label for t in agg.tables})
    backbones = sorted({t.backbone for t in agg.tables})
    families = [f for f in fmt.FAMILIES if any(r.family == f for t in agg.tables for r in t.rows)]
    tasks = list(dict.fromkeys(c.task for c in columns))
    return [
        '<section id="board"><h2>Leaderboard</h2>',
        '<form id="filters" onsubmit="return false">',
        _options("filter-setting", "Setting", settings, "setting"),
        _options("filter-backbone", "Backbone", backbones, "backbone"),
        _options("filter-family", "Family", families, "family"),
        _options("filter-task", "Task", tasks, None),
        '<span id="shown"></span></form>',
        '<p class="caption">Click a column header to sort (again to reverse). Bold: best mean '
        "per column within its setting and backbone, among cells with every seed. Hover a score "
        f"for its seeds. {escape(significance.caption())} {escape(training.MARK)}: "
        f"{escape(training.RULE)} Every paired comparison is listed under Significance.</p>",
        '<div class="scroll"><table id="leaderboard"><thead><tr>' + "".join(th) + "</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody></table></div></section>",
    ]


def _figures(agg: Aggregate, figures: dict[str, dict[str, dict[str, bytes]]]) -> list[str]:
    out = ['<section id="figures"><h2>Figures</h2>']
    for t in agg.tables:
        figs = figures.get(fmt.table_slug(t), {})
        out.append(f"<h3>{escape(t.setting.label)} — {escape(t.backbone)}</h3>")
        out.append(f'<p class="caption">{escape(fmt.table_caption(t, agg.ddof))}</p>')
        for name, caption in (
            (
                "params",
                "Test score (the average where the table has several columns) against trainable "
                "parameters (log scale; methods that train nothing in the panel at 0); colour: "
                "family; error bars: seed std; hollow: fewer seeds than the setting's.",
            ),
            ("seeds", "Every seed's test score of every method on every column; bar: the mean."),
            (
                "steps",
                "Test score against training steps, one line per method (log scale); bars: 1 "
                "std over seeds; hollow: dev still rising at the last evaluation in some seed; "
                "dashed: methods that do not train.",
            ),
        ):
            if name in figs:
                data = base64.b64encode(figs[name]["svg"]).decode("ascii")
                out.append(
                    f'<figure><img alt="{escape(caption)}" src="data:image/svg+xml;base64,{data}">'
                    f"<figcaption>{escape(caption)}</figcaption></figure>"
                )
        for col in t.columns:
            found = budget.pivot(t, col)
            if found is not None:
                out.append(
                    f'<p class="caption">{escape(fmt.column_header(col))} by training budget: '
                    "test x100, mean (std).</p>"
                )
                out.append(_simple_table(*found))
    return out + ["</section>"]


def _significance(agg: Aggregate) -> list[str]:
    """Every table's paired comparisons: against its column's best and against the baseline."""
    out = ['<section id="significance"><h2>Significance</h2>']
    out.append(
        f'<p class="caption">Paired differences (points x100). {escape(significance.caption())}</p>'
    )
    for t in agg.tables:
        rows = significance.table_rows(t)
        if rows:
            out.append(f"<h3>{escape(t.setting.label)} — {escape(t.backbone)}</h3>")
            out.append(_simple_table(significance.HEADER, rows))
    return out + ["</section>"]


def _simple_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=unverified' if c == 'unverified' else ''}>{escape(c)}</td>" for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _published(sources: list[Source], found: list[Match]) -> list[str]:
    out = ['<section id="published"><h2>Published numbers beside ours</h2>']
    if found:
        out.append(_simple_table(text.MATCH_HEADERS, text.match_rows(found)))
    else:
        out.append(f"<p>{escape(text.NO_MATCH)}</p>")
    for src in sources:
        out.append(f"<h3>{escape(src.citation)}</h3>")
        out.append(f'<p class="caption">{escape(src.url)}. Protocol: {escape(src.protocol)}</p>')
        out.append(
            f'<p class="caption">Spread: {escape(src.spread)}. Read from: {escape(src.read_from)}</p>'
        )
        out.append(_simple_table(*text.source_table(src)))
    return out + ["</section>"]


def page(agg: Aggregate, figures, sources: list[Source], found: list[Match]) -> str:
    n_ok = sum(r.ok for r in agg.records)
    notes = text.memory_notes(agg) + text.predicted_notes(agg) + agg.notes
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        "<title>tunebench leaderboard</title>",
        f"<style>\n{_asset('page.css')}</style>",
        "</head><body>",
        "<header><h1>tunebench leaderboard</h1>",
        f"<p>Made by <code>tunebench report</code> from {len(agg.records)} run records "
        f"({n_ok} finished, {len(agg.records) - n_ok} failed). Static page: no network.</p></header>",
        '<section id="protocol"><h2>How the numbers are made</h2><ul>',
        *(f"<li>{escape(line)}</li>" for line in fmt.protocol_lines(agg)),
        "</ul></section>",
        *_leaderboard(agg),
        *_significance(agg),
        *_figures(agg, figures),
        *_published(sources, found),
        '<section id="notes"><h2>Notes</h2><ul>',
        *(f"<li>{escape(n)}</li>" for n in notes),
        "</ul></section>",
        f"<script>\n{_asset('page.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
