"""Metrics, declared once (name, display name, higher-is-better) and computed with
scikit-learn / SciPy. GLUE conventions: CoLA Matthews correlation, MRPC/QQP F1 and
accuracy, STS-B Pearson and Spearman, everything else accuracy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn import metrics as skm


@dataclass(frozen=True)
class Metric:
    name: str
    display: str
    higher_is_better: bool
    fn: Callable[[np.ndarray, np.ndarray], float]  # (predictions, references) -> value
    regression: bool = False  # reads scores (STS-B), not class indices


def _pearson(p: np.ndarray, y: np.ndarray) -> float:
    return float(stats.pearsonr(p, y).statistic) if np.std(p) > 0 and np.std(y) > 0 else 0.0


def _spearman(p: np.ndarray, y: np.ndarray) -> float:
    return float(stats.spearmanr(p, y).statistic) if np.std(p) > 0 and np.std(y) > 0 else 0.0


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("acc", "Acc.", True, lambda p, y: float(skm.accuracy_score(y, p))),
        Metric("f1", "F1", True, lambda p, y: float(skm.f1_score(y, p, zero_division=0.0))),
        Metric("mcc", "MCC", True, lambda p, y: float(skm.matthews_corrcoef(y, p))),
        Metric("pearson", "Pearson", True, _pearson, regression=True),
        Metric("spearman", "Spearman", True, _spearman, regression=True),
    ]
}


def compute(
    names: Sequence[str],
    predictions: Sequence[int],
    labels: Sequence[int],
    scores: Sequence[float] | None = None,
    targets: Sequence[float] | None = None,
) -> dict[str, float]:
    """Every metric in ``names``: class metrics on (predictions, labels), regression metrics
    on (scores, targets) — STS-B's predicted and gold similarity."""
    out = {}
    for name in names:
        m = METRICS[name]
        if m.regression:
            if scores is None or targets is None:
                raise ValueError(f"metric {name} needs predicted scores and gold targets")
            out[name] = m.fn(np.asarray(scores, float), np.asarray(targets, float))
        else:
            out[name] = m.fn(np.asarray(predictions), np.asarray(labels))
    return out
