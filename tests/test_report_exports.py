"""Exported tables cannot attack their readers (issue 19, item 5): CSV cells are neutralised
against formula injection (OWASP), Markdown cells carry no raw HTML and no line breaks, LaTeX
cells are safe at their start as well as inside. Exact outputs, one case per row."""

from __future__ import annotations

import csv
import io
import json

import pytest
from report_records import record, write_all

from bench.report import latex
from bench.report.make import make_report
from bench.report.text import _md_escape, csv_cell, md_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+1", "'+1+1"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-", "'-"),
        ("lora+lm-head", "lora+lm-head"),  # '+' inside is harmless
        ("-1.50", "-1.50"),  # a negative score (CoLA MCC, a difference) is data
        ("+3.6", "+3.6"),
        ("-2.5e-3", "-2.5e-3"),
        ("85.00", "85.00"),
        (16, "16"),
        (None, ""),
    ],
)
def test_csv_cells_are_neutralised_except_plain_numbers(value, expected):
    assert csv_cell(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
        ("<svg onload=alert(1)>", "&lt;svg onload=alert(1)&gt;"),
        ("a & b", "a &amp; b"),
        ("a|b", "a\\|b"),
        ("two\nlines", "two<br>lines"),
        ("crlf\r\nand\rcr", "crlf<br>and<br>cr"),
        ("**83.5 (1.1)**", "**83.5 (1.1)**"),  # our own formatting is kept
    ],
)
def test_markdown_cells_escape_html_pipes_and_newlines(text, expected):
    assert _md_escape(text) == expected


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("[x](javascript:alert(1))", "\\[x\\](javascript:alert(1))"),  # no link without ']('
        ("![i](x.png)", "!\\[i\\](x.png)"),
        ("~~strike~~", "\\~\\~strike\\~\\~"),
        ("*bold*", "\\*bold\\*"),
        ("`code`", "\\`code\\`"),
        ("lora+lm-head", "lora+lm-head"),
    ],
)
def test_markdown_record_text_is_literal(label, expected):
    assert md_text(label) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1pt] x", "{}[1pt] x"),
        ("*star", "{}*star"),
        ("a[b]", "a[b]"),  # inside a cell '[' is harmless
        ("two\nlines", "two lines"),
        ("a<b>c|d", r"a\textless{}b\textgreater{}c\textbar{}d"),
        ("a_b & 5% #1 {x}", r"a\_b \& 5\% \#1 \{x\}"),
        ("\\input{/etc/passwd}", r"\textbackslash{}input\{/etc/passwd\}"),
    ],
)
def test_latex_cells_are_safe_at_the_start_and_inside(text, expected):
    assert latex.escape(text) == expected


HOSTILE = [
    "=cmd|' /C calc'!A0",
    "<script>alert(1)</script>",
    "[x]\nrow",
]


def test_hostile_labels_are_inert_in_every_output(tmp_path):
    recs = []
    for label in HOSTILE:
        for seed in (13, 21):
            rec = record("finetune", "SST-2", seed, 0.8)
            rec["cell"]["method_label"] = label
            recs.append(rec)
    # write() names folders after the label: give each a plain folder
    for i, rec in enumerate(recs):
        path = tmp_path / "test" / f"m{i}" / "r.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(rec))
    write_all(tmp_path, [record("zero-shot", "SST-2", s, 0.7) for s in (13, 21)])
    make_report(tmp_path)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "leaderboard.csv").read_text())))
    labels = [r["method_label"] for r in rows]
    assert "'=cmd|' /C calc'!A0" in labels and "<script>alert(1)</script>" in labels
    cells = list(csv.DictReader(io.StringIO((tmp_path / "cells.csv").read_text())))
    assert {c["method_label"] for c in cells} >= {"'=cmd|' /C calc'!A0"}
    md = (tmp_path / "leaderboard.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "| \\[x\\]<br>row | full |" in md  # one row, not two
    tex = (tmp_path / "tables" / "test-k16-tiny-roberta-main.tex").read_text()
    assert "\n{}\\[x\\] row &" not in tex and "\n{}[x] row &" in tex
    assert "\\textless{}script\\textgreater{}" in tex
