"""The figures (issue 16, item 6): the y axis names the metric and task, the log axis has a tick
at every decade its points span, zero-parameter methods sit in a panel of their own, error bars
are the seed std, and no label overlaps another label or a point."""

from __future__ import annotations

import itertools
import math

import pytest
from report_records import TRAINABLE, record, write_all

from bench.report.aggregate import aggregate, load_records
from bench.report.figures import params_figure, seeds_figure

SEEDS = (13, 21, 42)


def _table(root):
    (table,) = aggregate(load_records(root)).tables
    return table


@pytest.fixture
def crowded(tmp_path, monkeypatch):
    """Nine methods within a point of each other, at three parameter counts and at 0."""
    trainable = {"finetune": 2_000_000, "prompt-finetune": 2_000_000, "bitfit": 300,
                 "lora": 40_000, "zero-shot": 0}  # fmt: skip
    monkeypatch.setitem(TRAINABLE, "finetune", trainable["finetune"])
    monkeypatch.setitem(TRAINABLE, "prompt-finetune", trainable["prompt-finetune"])
    monkeypatch.setitem(TRAINABLE, "bitfit", trainable["bitfit"])
    monkeypatch.setitem(TRAINABLE, "lora", trainable["lora"])
    recs = []
    for i, m in enumerate(["finetune", "prompt-finetune", "bitfit", "lora", "zero-shot"]):
        for j, s in enumerate(SEEDS):
            recs.append(record(m, "SST-2", s, 0.80 + 0.002 * i + 0.01 * j))
    for label, family, n in (("lora+a", "partial", 40_000), ("lora+b", "partial", 40_000),
                             ("zero-shot+a", "prompt", 0), ("zero-shot+b", "prompt", 0)):  # fmt: skip
        for j, s in enumerate(SEEDS[: 1 if label.endswith("b") else 3]):
            rec = record(
                "lora" if family == "partial" else "zero-shot", "SST-2", s, 0.801 + 0.01 * j
            )
            rec["cell"]["method_label"] = label
            rec["params"]["trainable"] = n
            recs.append(rec)
    return _table(write_all(tmp_path, recs))


def test_zero_parameter_methods_have_a_panel_and_the_log_axis_every_decade(crowded):
    fig = params_figure(crowded)
    zero, main = fig.axes[:2]
    assert [t.get_text() for t in zero.get_xticklabels()] == ["0"]
    ticks = main.get_xticks()
    assert [round(math.log10(t)) for t in ticks] == [2, 3, 4, 5, 6, 7]  # 300 .. 2e6
    assert zero.get_ylabel() == "SST-2 (Acc.), test x100"
    zero_names = {n for t in zero.texts for n in t.get_text().split("\n")}
    assert zero_names == {"zero-shot", "zero-shot+a", "zero-shot+b (1/3)"}


def test_error_bars_are_the_seed_std_and_fewer_seeds_have_none(crowded):
    fig = params_figure(crowded)
    main = fig.axes[1]
    bars = [c for c in main.containers if type(c).__name__ == "ErrorbarContainer"]
    # finetune, prompt-finetune, bitfit, lora, lora+a; lora+b has one seed: no bar
    assert len(bars) == 5
    (bar_lines,) = bars[0].lines[2]  # seeds 0.80, 0.81, 0.82 (+ a shift): std 0.816 points
    (low, high) = bar_lines.get_segments()[0]
    assert high[1] - low[1] == pytest.approx(2 * 100 * 0.01 * math.sqrt(2 / 3))


def test_labels_never_overlap_each_other_or_points(crowded):
    fig = params_figure(crowded)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for ax in fig.axes for t in ax.texts]
    assert len(boxes) == 9  # one label per point
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    for ax in fig.axes[:2]:
        for coll in ax.collections:
            for x, y in ax.transData.transform(coll.get_offsets()):
                for box in boxes:
                    assert not box.contains(x, y)


def test_seeds_figure_grows_with_the_methods_not_the_width(crowded):
    fig = seeds_figure(crowded)
    w, h = fig.get_size_inches()
    assert w == pytest.approx(5.2) and h == pytest.approx(0.24 * 9 + 0.9 + 0.4)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "lora+b (1/3)" in labels and "finetune" in labels
