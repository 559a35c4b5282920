"""The aggregation protocol on hand-made records with known answers, the report's outputs, their
determinism, the LaTeX tables (parsed always; compiled with pdflatex where it is installed,
always in CI), the published numbers, and the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_records import record, standard_set, write, write_all

from bench.report import fmt, latex
from bench.report.aggregate import (
    FAMILY_ORDER,
    RecordError,
    aggregate,
    choice_agrees,
    choose_trial,
    load_records,
    summarize,
)
from bench.report.make import make_report
from bench.report.published import load_published, matches


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    root = write_all(tmp_path_factory.mktemp("results"), standard_set())
    make_report(root)
    return root


def _table(root: Path, ddof: int = 0):
    (table,) = aggregate(load_records(root), ddof).tables
    return table


def _cell(table, method: str, label: str):
    row = next(r for r in table.rows if r.method_label == method)
    return row, next(c for col, c in row.cells.items() if col.label == label)


# --- the protocol ----------------------------------------------------------------------


def test_summarize_known_values_and_ddof():
    st = summarize([0.8, 0.9, 1.0], ddof=0)
    assert (st.n, st.median, st.min, st.max) == (3, 0.9, 0.8, 1.0)
    assert st.mean == pytest.approx(0.9)
    assert st.std == pytest.approx(math.sqrt(0.02 / 3))  # population std (LM-BFF)
    assert summarize([0.8, 0.9, 1.0], ddof=1).std == pytest.approx(0.1)  # sample std
    assert summarize([0.7, 0.9], ddof=0).median == pytest.approx(0.8)
    assert summarize([0.5], ddof=0).std == 0.0
    assert summarize([0.5], ddof=1).std is None  # undefined, not 0 and not NaN
    assert summarize([]).mean is None


def test_choose_trial_breaks_ties_by_dev_loss_then_trial_number():
    t = [
        {"number": 0, "state": "COMPLETE", "dev_score": 0.8, "dev_loss": 0.5},
        {"number": 1, "state": "COMPLETE", "dev_score": 0.9, "dev_loss": 0.6},
        {"number": 2, "state": "COMPLETE", "dev_score": 0.9, "dev_loss": 0.4},
        {"number": 3, "state": "COMPLETE", "dev_score": 0.9, "dev_loss": 0.4},
        {"number": 4, "state": "PRUNED", "dev_score": 1.0, "dev_loss": 0.1},
        {"number": 5, "state": "FAIL", "dev_score": None, "error": "boom"},
    ]
    assert choose_trial(t)["number"] == 2  # best score; tie -> lower loss; tie -> earlier
    assert choose_trial(t, higher_is_better=False)["number"] == 0
    no_loss = [{"number": 0, "state": "COMPLETE", "dev_score": 0.9}, t[2]]
    assert choose_trial(no_loss)["number"] == 2  # a trial without a dev loss loses a tie
    assert choose_trial(t[4:]) is None  # nothing completed


def test_complete_cell_known_mean_std_median(tmp_path):
    table = _table(write_all(tmp_path, standard_set()))
    row, cell = _cell(table, "finetune", "SST-2")
    assert cell.status == "complete" and cell.marker == ""
    assert cell.stats.mean == pytest.approx(0.85)
    assert cell.stats.std == pytest.approx(math.sqrt(0.005 / 3))
    assert cell.stats.median == pytest.approx(0.85) and cell.stats.n == 3
    assert fmt.cell_text(cell) == "85.0 (4.1)"
    # the average runs over every column: SST-2, MNLI matched and mismatched, RTE
    assert [c.label for c in table.columns] == [
        "SST-2",
        "MNLI (matched, partial data)",
        "MNLI (mismatched, partial data)",
        "RTE",
    ]
    assert row.average == pytest.approx((0.85 + 0.5 + 0.4 + 0.6) / 4)
    assert _table(tmp_path, ddof=1).rows[0].cells[table.columns[0]].stats.std == pytest.approx(0.05)


def test_failed_and_missing_seeds_are_shown_not_dropped(tmp_path):
    table = _table(write_all(tmp_path, standard_set()))
    _, lora = _cell(table, "lora", "SST-2")  # seed 13 ok, 21 failed, 42 no record
    assert [s.status for s in lora.seeds] == ["ok", "failed", "missing"]
    assert lora.expected == (13, 21, 42)
    assert lora.stats.n == 1 and lora.stats.mean == pytest.approx(0.95)
    assert lora.status == "incomplete"
    assert lora.marker == "1/3 seeds; 1 failed, 1 missing"
    assert lora.seeds[1].error == "CUDA out of memory"
    row, bitfit = _cell(table, "bitfit", "SST-2")  # every seed failed
    assert bitfit.status == "failed" and fmt.cell_text(bitfit) == "failed"
    assert bitfit.marker == "0/3 seeds; 3 failed"
    _, rte = _cell(table, "bitfit", "RTE")  # no record at all: still a cell
    assert rte.status == "missing" and rte.marker == "0/3 seeds; 3 missing"
    assert row.average is None and row.average_marker == "0/4 tasks"


def test_seeds_a_profile_left_out_are_not_run_not_missing(tmp_path):
    recs = [record("finetune", "SST-2", s, 0.8 + s / 1000, profile="cpu") for s in (13, 21, 42)]
    recs += [record("bitfit", "SST-2", 13, 0.7, profile="cpu")]
    recs[-1]["planned_seeds"] = [13]
    recs += [record("lora", "SST-2", 13, 0.6, profile="cpu")]  # no planned_seeds: 2 missing
    table = _table(write_all(tmp_path, recs))
    _, ptr = _cell(table, "bitfit", "SST-2")
    assert [s.status for s in ptr.seeds] == ["ok", "not run", "not run"]
    assert ptr.marker == "1/3 seeds; 2 not run" and ptr.status == "incomplete"
    assert fmt.cell_text(ptr) == "70.0 (n/a)"  # one seed has no spread, even with ddof=0
    _, lora = _cell(table, "lora", "SST-2")
    assert lora.marker == "1/3 seeds; 2 missing"


def test_bold_marks_every_tie_at_display_precision(tmp_path):
    table = _table(write_all(tmp_path, standard_set()))
    rte = next(c for c in table.columns if c.task == "RTE")
    assert fmt.best_rows(table, rte) == {"prompt-finetune", "lora"}
    sst = table.columns[0]
    # lora's 95.0 is one seed of three: shown, never bold; the best complete cell is
    assert fmt.best_rows(table, sst) == {"prompt-finetune"}


def test_one_seed_cells_are_never_bold_and_one_column_has_no_average(tmp_path):
    recs = [record("finetune", "SST-2", s, 0.80, profile="cpu") for s in (13, 21, 42)]
    recs += [record("lora", "SST-2", 13, 0.95, profile="cpu")]
    recs[-1]["planned_seeds"] = [13]  # a profile ran it on one seed: every planned seed done
    write_all(tmp_path, recs)
    table = _table(tmp_path)
    assert fmt.best_rows(table, table.columns[0]) == {"finetune"}
    assert fmt.best_average(table) == set() and not fmt.has_average(table)
    make_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| Method | Family | SST-2 (Acc.) | Trainable params |" in md and "| Avg." not in md
    assert "| lora | partial | 95.0 (n/a) [1/3 seeds; 2 not run] |" in md
    assert "| finetune | full | **80.0 (0.0)** |" in md
    header = (tmp_path / "leaderboard.csv").read_text().splitlines()[0]
    assert "average" not in header
    assert "Avg." not in (tmp_path / "tables" / "cpu-k16-tiny-roberta-main.tex").read_text()
    assert ">Avg.</th>" not in (tmp_path / "leaderboard.html").read_text()


def test_each_note_once(tmp_path):
    recs = [record("finetune", "SST-2", s, 0.8) for s in (13, 21)]
    recs += [record("zero-shot", "SST-2", s, 0.7) for s in (13, 21)]
    for r in recs:
        r["memory"]["how"] = "CPU: live tensors"
    for r in recs[2:]:
        r["memory"]["how"] = "inference batch; CPU: live tensors"
    make_report(write_all(tmp_path, recs))
    md = (tmp_path / "leaderboard.md").read_text()
    notes = md[md.index("## Notes") :].splitlines()[2:]
    assert notes == ["- Peak memory (cpu): live tensors. For zero-shot: inference batch"]


def test_settings_are_never_mixed(tmp_path):
    recs = [record("finetune", "SST-2", s, 0.8, profile="cpu") for s in (13, 21)]
    recs += [record("finetune", "SST-2", s, 0.6, profile="gpu") for s in (13, 21)]
    recs += [record("finetune", "SST-2", 13, 0.5, profile=None)]  # a single run
    recs += [record("finetune", "SST-2", 13, 0.4, profile="cpu", k=8)]
    agg = aggregate(load_records(write_all(tmp_path, recs)))
    got = [
        (t.setting.profile, t.setting.k, t.rows[0].cells[t.columns[0]].stats.mean)
        for t in agg.tables
    ]
    assert got == [("cpu", 8, 0.4), ("cpu", 16, 0.8), ("gpu", 16, 0.6), ("runs", 16, 0.5)]
    assert agg.tables[-1].setting.label == "single runs (no search), K=16, fp32"


def test_choice_disagreement_is_noted(tmp_path):
    trials = [
        {"number": 0, "state": "COMPLETE", "dev_score": 0.9, "dev_loss": 0.2, "seconds": 2.0},
        {"number": 1, "state": "COMPLETE", "dev_score": 0.75, "dev_loss": 0.1, "seconds": 3.0},
    ]
    write(tmp_path, record("finetune", "SST-2", 13, 0.8, trials=trials, dev=0.75))
    agg = aggregate(load_records(tmp_path))
    assert len(agg.notes) == 1 and "not the best trial" in agg.notes[0]
    cell = agg.tables[0].rows[0].cells[agg.tables[0].columns[0]]
    assert cell.seeds[0].trials == 2 and cell.seeds[0].choice_agrees is False
    assert agg.tables[0].rows[0].efficiency()["search_s"] == 5.0


def test_choice_reads_the_sweeps_chosen_trial():
    trials = [  # the sweep's trial summaries: the dev score is under "dev"
        {"number": 0, "state": "COMPLETE", "dev": 0.9, "dev_loss": 0.3, "seconds": 1.0},
        {"number": 1, "state": "COMPLETE", "dev": 0.9, "dev_loss": 0.2, "seconds": 1.0},
        {"number": 2, "state": "PRUNED", "dev": 0.95, "dev_loss": 0.1, "seconds": 1.0},
    ]
    rec = record("finetune", "SST-2", 13, 0.8, trials=trials, dev=0.9)
    assert choice_agrees({**rec, "search": {"chosen_trial": 1}}) is True
    assert choice_agrees({**rec, "search": {"chosen_trial": 0}}) is False  # tie: lower loss
    assert choice_agrees(rec) is True  # no chosen_trial: the dev scores agree
    assert choice_agrees(record("finetune", "SST-2", 13, 0.8)) is None  # a single run


# --- loading -----------------------------------------------------------------------------


def test_records_are_validated_and_other_json_skipped(tmp_path):
    write(tmp_path, record("finetune", "SST-2", 13, 0.8))
    (tmp_path / "profile.json").write_text(json.dumps({"name": "cpu"}))
    loaded = load_records(tmp_path)
    assert len(loaded.records) == 1 and loaded.skipped == ["profile.json"]
    bad = record("finetune", "SST-2", 21, 0.8)
    del bad["cell"]["seed"]
    path = write(tmp_path, {**bad, "cell": {**bad["cell"], "seed": "x"}})
    with pytest.raises(RecordError, match=re.escape(str(path)) + ".*cell.seed"):
        load_records(tmp_path)


def test_two_records_for_one_seed_are_an_error(tmp_path):
    write(tmp_path, record("finetune", "SST-2", 13, 0.8))
    dup = tmp_path / "copy.json"
    dup.write_text(json.dumps(record("finetune", "SST-2", 13, 0.7)))
    with pytest.raises(RecordError, match="two records for one cell"):
        load_records(tmp_path)


def test_family_order_is_the_method_protocols():
    from methods.base import FAMILIES

    assert FAMILY_ORDER == FAMILIES and tuple(fmt.FAMILIES) == FAMILIES


# --- outputs -----------------------------------------------------------------------------


def _outputs(root: Path) -> dict[str, bytes]:
    skip = {"json"}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lstrip(".") not in skip
    }


def test_report_writes_every_output(report_dir):
    names = set(_outputs(report_dir))
    slug = "test-k16-tiny-roberta"
    assert {"leaderboard.md", "leaderboard.csv", "leaderboard.html", "cells.csv"} <= names
    assert {f"tables/{slug}-main.tex", f"tables/{slug}-efficiency.tex"} <= names
    for kind in ("params", "seeds"):
        assert {f"figures/{slug}-{kind}.png", f"figures/{slug}-{kind}.svg"} <= names


def test_report_is_byte_identical_for_the_same_records(report_dir, tmp_path):
    first = _outputs(report_dir)
    make_report(report_dir)  # again, in place
    assert _outputs(report_dir) == first
    copy = write_all(tmp_path / "elsewhere", standard_set())  # same records, other folder
    make_report(copy)
    assert _outputs(copy) == first


def test_stale_tables_and_figures_are_removed(tmp_path):
    root = write_all(tmp_path, standard_set())
    (root / "figures").mkdir()
    (root / "figures" / "gone-k16-x-params.png").write_bytes(b"old")
    (root / "figures" / "keep.txt").write_text("not ours")
    make_report(root)
    assert not (root / "figures" / "gone-k16-x-params.png").exists()
    assert (root / "figures" / "keep.txt").exists()


def test_markdown_marks_incomplete_cells_and_ties(report_dir):
    md = (report_dir / "leaderboard.md").read_text()
    assert "ddof=0: population std, as LM-BFF" in md
    lora = next(line for line in md.splitlines() if line.startswith("| lora |"))
    assert "| 95.0 (n/a) [1/3 seeds; 1 failed, 1 missing] |" in lora  # one seed: not bold
    assert "**70.0 (0.0)**" in lora  # RTE tie with prompt-finetune: both bold
    pft = next(line for line in md.splitlines() if line.startswith("| prompt-finetune |"))
    assert "**70.0 (0.0)**" in pft and "missing [0/3 seeds; 3 missing]" in pft
    bitfit = next(line for line in md.splitlines() if line.startswith("| bitfit |"))
    assert "failed [0/3 seeds; 3 failed]" in bitfit


def test_csv_has_known_values(report_dir):
    rows = list(csv.DictReader(io.StringIO((report_dir / "leaderboard.csv").read_text())))
    ft = next(r for r in rows if r["method_label"] == "finetune")
    assert ft["SST-2 acc x100 mean"] == "85.00" and ft["SST-2 acc x100 std (ddof=0)"] == "4.08"
    assert ft["average x100"] == "58.75" and ft["family"] == "full"
    lora = next(r for r in rows if r["method_label"] == "lora")
    assert lora["SST-2 seeds"] == "1/3 seeds; 1 failed, 1 missing"
    assert lora["trainable params"] == "50" and lora["average x100"] == ""
    cells = list(csv.DictReader(io.StringIO((report_dir / "cells.csv").read_text())))
    c = next(r for r in cells if r["method_label"] == "lora" and r["task"] == "SST-2")
    assert (c["status"], c["seeds_ok"], c["seeds_failed"], c["seeds_missing"]) == (
        "incomplete",
        "1",
        "1",
        "1",
    )
    assert c["scores_by_seed"] == "13:0.950000" and "CUDA out of memory" in c["failed_errors"]


def test_partial_data_is_marked_in_every_output(report_dir):
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "cells.csv"):
        text = (report_dir / name).read_text()
        assert ("MNLI (matched, partial data)" in text) or ("MNLI,true" in text), name
    tex = (report_dir / "tables" / "test-k16-tiny-roberta-main.tex").read_text()
    assert "matched, partial data" in tex and "sample of the task's files" in tex


def test_metric_names_come_from_the_metric_declarations(tmp_path):
    write_all(tmp_path, [record("finetune", "CoLA", 13, 0.3), record("finetune", "MRPC", 13, 0.8)])
    table = _table(tmp_path)
    assert [fmt.column_header(c) for c in table.columns] == ["CoLA (MCC)", "MRPC (F1)"]


# --- LaTeX ---------------------------------------------------------------------------------


def check_latex(text: str) -> None:
    """Balanced environments and braces, and every tabular row with the declared columns."""
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+\*?)\}", text):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"unbalanced \\end{{{env}}}"
    assert not stack, f"unclosed environments {stack}"
    body = re.sub(r"\\[{}%&$#_]", "", text)
    assert body.count("{") == body.count("}"), "unbalanced braces"
    spec = re.search(r"\\begin\{tabular\}\{(.*)\}\n", text).group(1)
    if m := re.fullmatch(r"l\*\{(\d+)\}\{c\}", spec):
        ncols = 1 + int(m.group(1))
    else:
        ncols = len(spec)
    inner = text.split("\\toprule", 1)[1].split("\\bottomrule", 1)[0]
    for line in inner.splitlines():
        if not line.endswith("\\\\"):
            continue
        span = re.search(r"\\multicolumn\{(\d+)\}", line)
        cells = re.sub(r"\\&", "", line).count("&") + 1
        assert (int(span.group(1)) if span else cells) == ncols, line


def test_latex_tables_parse(report_dir):
    tables = sorted((report_dir / "tables").glob("*.tex"))
    assert len(tables) == 2
    for path in tables:
        check_latex(path.read_text())
    main = (report_dir / "tables" / "test-k16-tiny-roberta-main.tex").read_text()
    assert "& 95.0 (n/a)$^\\dagger$" in main  # one seed of three: marked, not bold
    assert "\\textbf{90.0} (0.0)" in main  # the best complete cell
    assert main.count("\\textbf{70.0}") == 2  # the RTE tie
    assert "lora/SST-2: 1/3 seeds; 1 failed, 1 missing" in main
    assert "ddof=0" in main and "\\multicolumn{6}{l}{\\emph{Full fine-tuning}}" in main


def test_latex_splits_wide_tables_into_blocks_of_eight(tmp_path):
    from tasks import TASKS

    write(tmp_path, record("finetune", "SST-2", 13, 0.5))
    tasks = [t for t in TASKS if TASKS[t].metrics[0] == "acc" and t not in ("SST-2", "MNLI")][:9]
    for t in tasks:
        rec = record("finetune", "SST-2", 13, 0.5)
        rec["cell"]["task"] = t
        write(tmp_path, rec)
    text = latex.main_table(_table(tmp_path), 0)
    check_latex(text)
    assert text.count("\\textbf{Avg.}") == 1 and "\\begin{tabular}{l*{8}{c}}" in text


def test_latex_escapes_special_characters():
    assert latex.escape("a_b & 5% #1 {x}") == r"a\_b \& 5\% \#1 \{x\}"


def test_latex_tables_compile(report_dir, tmp_path):
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex missing in CI: .ci/run installs texlive-latex-recommended")
        pytest.skip("pdflatex not installed (apt-get install texlive-latex-recommended)")
    inputs = "\n".join(
        f"\\input{{{p.as_posix()}}}" for p in sorted((report_dir / "tables").glob("*.tex"))
    )
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        f"{inputs}\n\\end{{document}}\n"
    )
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


# --- published numbers ----------------------------------------------------------------------


def test_published_numbers_are_well_formed_and_flagged():
    sources = {s.id: s for s in load_published()}
    assert set(sources) == {"lmbff-table3", "lora-table2"}
    lora = sources["lora-table2"]
    for row in lora.rows:  # the printed average checks the transcription of each row
        mean = sum(v[0] for v in row.values) / len(row.values)
        assert abs(mean - row.average) <= 0.051, row.row
    assert all(r.verified for r in lora.rows)
    lmbff = sources["lmbff-table3"]
    # verified against AMuLaP's reprint (Table 2), all eight columns; '+ demonstrations' is not
    # in the reprint
    assert [r.row for r in lmbff.rows if not r.verified] == ["+ demonstrations"]
    assert "AMuLaP" in lmbff.read_from and "reprint" in lmbff.read_from
    assert [c.label for c in lmbff.columns] == [
        "MNLI (acc)",
        "MNLI-mm (acc)",
        "SST-2 (acc)",
        "QNLI (acc)",
        "RTE (acc)",
        "MRPC (F1)",
        "QQP (F1)",
        "CoLA (MCC)",
    ]
    gpt3 = next(r for r in lmbff.rows if r.method_label == "in-context")
    assert gpt3.values[-1] == (-1.5, 2.4) and gpt3.values[0] == (52.0, 0.7)
    assert {r.row for r in lmbff.rows} >= {
        "Majority",
        "Prompt-based zero-shot",
        '"GPT-3" in-context learning',
        "Fine-tuning",
        "Prompt-based FT (man)",
        "+ demonstrations",
        "Fine-tuning (full training set)",
    }


def test_published_match_states_the_difference_and_protocol(tmp_path):
    seeds = (13, 21, 42, 87, 100)
    recs = [record("zero-shot", "SST-2", s, 0.80, backbone="roberta-large") for s in seeds]
    recs += [record("zero-shot", "RTE", s, 0.50, backbone="roberta-large") for s in seeds[:2]]
    agg = aggregate(load_records(write_all(tmp_path, recs)))
    found = {m.column.task: m for m in matches(agg, load_published())}
    assert set(found) == {"SST-2", "RTE"}
    assert found["SST-2"].difference == pytest.approx(80.0 - 83.6)
    assert found["SST-2"].same_protocol  # the paper's five seeds, all finished
    assert not found["RTE"].same_protocol  # two seeds: not LM-BFF's protocol
    make_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert (
        "| lmbff-table3 | Prompt-based zero-shot | profile test, K=16, fp32 | roberta-large | SST-2 (acc) | 83.6 | 80.0 (0.0) | -3.6 | yes | yes |"
        in md
    )


# --- CLI -------------------------------------------------------------------------------------


def test_cli_report(tmp_path, capsys):
    from bench.cli.app import main

    write(tmp_path, record("finetune", "SST-2", 13, 0.8))
    assert main(["report", "--results", str(tmp_path), "--ddof", "1"]) == 0
    assert "leaderboard.html" in capsys.readouterr().out
    assert "ddof=1: sample std" in (tmp_path / "leaderboard.md").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", "--results", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunebench: error: no run records under") and err.count("\n") == 1
    assert main(["report", "--results", str(tmp_path / "nope")]) == 2


def test_points_at_one_place_share_a_label_and_close_labels_stack(tmp_path):
    from bench.report.figures import params_figure

    recs = [record("finetune", "SST-2", s, 0.80, profile="cpu") for s in (13, 21)]
    recs += [record("prompt-finetune", "SST-2", s, 0.80, profile="cpu") for s in (13, 21)]
    recs += [record("bitfit", "SST-2", s, 0.50, profile="cpu") for s in (13, 21)]
    recs += [record("lora", "SST-2", s, 0.60, profile="cpu") for s in (13, 21)]
    fig = params_figure(_table(write_all(tmp_path, recs)))
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["bitfit", "finetune\nprompt-finetune", "lora"]
