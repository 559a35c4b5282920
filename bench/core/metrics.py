"""Metrics, declared once (name, display name, higher-is-better) and computed with
scikit-learn / SciPy. GLUE conventions: CoLA Matthews correlation, MRPC/QQP F1 and
accuracy, STS-B Pearson and Spearman, everything else accuracy. NumPy, SciPy and
scikit-learn are imported when a metric is computed, not with the declarations (the command
line checks metric names before anything heavy is loaded)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str
    display: str
    higher_is_better: bool
    fn: Callable[[np.ndarray, np.ndarray], float]  # (predictions, references) -> value
    regression: bool = False  # reads scores (STS-B), not class indices


def _pearson(p: np.ndarray, y: np.ndarray) -> float:
    import numpy as np
    from scipy import stats

    return float(stats.pearsonr(p, y).statistic) if np.std(p) > 0 and np.std(y) > 0 else 0.0


def _spearman(p: np.ndarray, y: np.ndarray) -> float:
    import numpy as np
    from scipy import stats

    return float(stats.spearmanr(p, y).statistic) if np.std(p) > 0 and np.std(y) > 0 else 0.0


def _sklearn(name: str, **kw) -> Callable[[np.ndarray, np.ndarray], float]:
    """``sklearn.metrics.<name>(references, predictions)``, imported on first use."""

    def fn(p, y):
        from sklearn import metrics as skm

        return float(getattr(skm, name)(y, p, **kw))

    return fn


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("acc", "Acc.", True, _sklearn("accuracy_score")),
        Metric("f1", "F1", True, _sklearn("f1_score", zero_division=0.0)),
        Metric("mcc", "MCC", True, _sklearn("matthews_corrcoef")),
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
    import numpy as np

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
