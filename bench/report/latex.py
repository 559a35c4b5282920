"""LaTeX (booktabs) tables: the main table in the layout of LM-BFF's Table 3 (methods as rows
grouped by family, tasks as columns, ``mean (std)``, the best per column in bold) and an
efficiency table. Each file is a ``table`` float to ``\\input``; it needs ``booktabs``."""

from __future__ import annotations

from bench.report import fmt, predicted
from bench.report.aggregate import PROTOCOL, Table

MAX_COLUMNS = 8  # per block, as LM-BFF's Table 3 (two blocks of eight tasks)

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    fmt.DASH: "--",
    "\u2014": "---",
    "\u2212": "$-$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
_ESCAPES.update({ch: " " for ch in "\r\n\t\f\v"})  # a blank line inside a tabular ends it


def escape(text: str) -> str:
    """Text as LaTeX that prints it literally, safe anywhere in a cell: special characters
    escaped, line breaks as spaces, and a leading ``[`` or ``*`` shielded by ``{}`` (after ``\\\\``
    or ``\\midrule`` they would be read as an optional argument)."""
    out = "".join(_ESCAPES.get(ch, ch) for ch in str(text))
    return "{}" + out if out.startswith(("[", "*")) else out


def _caption(text: str) -> str:
    return escape(text).replace("x100", r"$\times$100")


def _head(kind: str) -> list[str]:
    return [
        f"% {kind} table made by `tunebench report` (protocol {PROTOCOL}); do not edit.",
        "% Needs \\usepackage{booktabs}.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\setlength{\tabcolsep}{3pt}",
    ]


def _family_groups(table: Table):
    groups: dict[str, list] = {}
    for row in table.rows:
        groups.setdefault(row.family, []).append(row)
    return groups.items()


def main_table(table: Table, ddof: int) -> str:
    """Methods as rows grouped by family, tasks (and the average) as columns."""
    # Per column: the task, then "(metric)", then what the name alone does not say.
    headers = [
        (c.task, f"({fmt.metric_display(c.metric)})", ", ".join(c.notes)) for c in table.columns
    ]
    if fmt.has_average(table):
        headers.append(("Avg.", "", ""))
    blocks = [headers[i : i + MAX_COLUMNS] for i in range(0, len(headers), MAX_COLUMNS)]
    width = max(len(b) for b in blocks)
    best = {c: fmt.best_rows(table, c) for c in table.columns}
    best_avg = fmt.best_average(table)
    marks: list[str] = []
    lines = _head("Main") + [rf"\begin{{tabular}}{{l*{{{width}}}{{c}}}}", r"\toprule"]
    start = 0
    for b, block in enumerate(blocks):
        pad = [""] * (width - len(block))
        if b:
            lines.append(r"\midrule")
        lines.append(
            " & ".join(["", *(rf"\textbf{{{escape(h[0])}}}" for h in block), *pad]) + r" \\"
        )
        for line in (1, 2):
            if any(h[line] for h in block):
                cells = (rf"\footnotesize {escape(h[line])}" if h[line] else "" for h in block)
                lines.append(" & ".join(["", *cells, *pad]) + r" \\")
        for family, rows in _family_groups(table):
            lines += [
                r"\midrule",
                rf"\multicolumn{{{width + 1}}}{{l}}{{\emph{{{escape(fmt.family_name(family))}}}}} \\",
            ]
            for row in rows:
                cells = []
                for i in range(start, start + len(block)):
                    if i < len(table.columns):
                        col = table.columns[i]
                        cells.append(_cell(row, col, row.method_label in best[col], marks))
                    else:
                        cells.append(_average(row, row.method_label in best_avg))
                lines.append(" & ".join([escape(row.method_label), *cells, *pad]) + r" \\")
        start += len(block)
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = _caption(
        fmt.table_caption(table, ddof)
        + " Bold: best mean per column among cells with every seed."
        + (
            " Avg.: over every column, given only where each has a mean."
            if fmt.has_average(table)
            else ""
        )
    )
    if marks:
        caption += r" $\dagger$ " + _caption(
            "not every seed of the setting has a score (failed, missing or not run): "
            + "; ".join(marks)
            + "."
        )
    lines += [rf"\caption{{{caption}}}"]
    lines += [rf"\label{{tab:tunebench-main-{fmt.table_slug(table)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _cell(row, col, bold: bool, marks: list[str]) -> str:
    cell = row.cells[col]
    st = cell.stats
    if st.mean is None:
        text = rf"\emph{{{cell.status}}}"
    else:
        mean = fmt.score(st.mean)
        text = (rf"\textbf{{{mean}}}" if bold else mean) + f" ({fmt.std_text(st)})"
    if cell.marker and st.mean is not None:  # a failed/missing cell says so in its text
        marks.append(f"{row.method_label}/{col.label}: {cell.marker}")
        text += r"$^\dagger$"
    return text


def _average(row, bold: bool) -> str:
    if row.average is None:
        return "--"
    text = fmt.score(row.average)
    return rf"\textbf{{{text}}}" if bold else text


def efficiency_table(table: Table) -> str:
    """Per method: trainable parameters, % of the backbone, peak memory, train time, trials."""
    headers = [
        "Method",
        "Trainable params",
        r"\% of backbone",
        "Peak memory",
        "Predicted peak (GPU)",
        "Train time",
        "Trials/seed",
    ]
    lines = _head("Efficiency") + [r"\begin{tabular}{lrrrrrr}", r"\toprule"]
    lines.append(" & ".join(rf"\textbf{{{h}}}" for h in headers) + r" \\")
    devices = set()
    for family, rows in _family_groups(table):
        lines += [
            r"\midrule",
            rf"\multicolumn{{7}}{{l}}{{\emph{{{escape(fmt.family_name(family))}}}}} \\",
        ]
        for row in rows:
            eff = row.efficiency()
            devices.update(eff["devices"])
            cells = [fmt.params(eff["trainable"]), fmt.pct(eff["pct"]), fmt.mib(eff["peak_bytes"])]
            cells += [fmt.predicted(eff["predicted"])]
            cells += [fmt.seconds(eff["train_s"]), fmt.trials(eff["trials"])]
            lines.append(" & ".join(escape(x) for x in [row.method_label, *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = (
        f"{table.setting.label}, backbone {table.backbone}: cost per method. Medians over each "
        "method's finished runs (all tasks and seeds): trainable parameters (unique tensors "
        "with requires_grad, heads included) and their share of the backbone's, peak memory of "
        f"one training step (inference batch for untrained methods) measured on "
        f"{', '.join(sorted(devices)) or 'n/a'}, train time of the chosen configuration. "
        + predicted.note()
    )
    lines += [rf"\caption{{{_caption(caption)}}}"]
    lines += [rf"\label{{tab:tunebench-efficiency-{fmt.table_slug(table)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
