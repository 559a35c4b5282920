import math

import pytest

from bench.core.metrics import METRICS, compute


def test_classification_metrics_known_values():
    preds, labels = [1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 0, 1]
    out = compute(["acc", "f1", "mcc"], preds, labels)
    assert out["acc"] == pytest.approx(4 / 6)
    assert out["f1"] == pytest.approx(2 / 3)  # tp=2, fp=1, fn=1
    assert out["mcc"] == pytest.approx(1 / 3)


def test_regression_metrics_read_scores():
    out = compute(
        ["pearson", "spearman"], [0] * 4, [0] * 4, scores=[1, 2, 3, 5], targets=[2, 4, 6, 7]
    )
    assert out["spearman"] == pytest.approx(1.0)
    assert 0.9 < out["pearson"] < 1.0
    assert compute(["pearson"], [], [], scores=[1, 1, 1], targets=[1, 2, 3])["pearson"] == 0.0


def test_regression_metric_without_scores_is_an_error():
    with pytest.raises(ValueError, match="needs predicted scores"):
        compute(["pearson"], [1], [1])


def test_metric_metadata_declared_once():
    assert all(m.higher_is_better for m in METRICS.values())
    assert METRICS["mcc"].display == "MCC" and not math.isnan(
        compute(["mcc"], [1, 1], [1, 0])["mcc"]
    )
