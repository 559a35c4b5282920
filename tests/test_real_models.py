"""Real weights, few and short (``-m slow``): the harness gets real predictions out of real
backbones. Slices are fixed (the first rows of SST-2's test set, the GLUE dev set), so the
measured numbers in the comments reproduce.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from bench.backbones.cache import fresh_backbone
from bench.backbones.catalog import availability
from bench.engine.train import evaluate
from methods import get_method
from tasks import get_task
from tasks.splits import sample_split

pytestmark = pytest.mark.slow

SEED = 13
SLICE = 96  # three eval batches of 32: ~45 s on 2 shared CPU cores


def needs(backbone: str) -> None:
    status = availability(backbone)
    if status != "available":
        pytest.skip(f"{backbone}: {status}")


@pytest.fixture(scope="module")
def sst2(data_root):
    split = sample_split(get_task("SST-2"), 16, SEED, data_root)
    rows = split.test["test"][:SLICE]
    majority = max(Counter(e.label for e in rows).values()) / len(rows)
    return split, rows, majority


def test_smollm2_zero_shot_beats_the_majority_class_on_sst2(sst2):
    needs("smollm2-135m")
    split, rows, majority = sst2
    task, method = get_task("SST-2"), get_method("zero-shot")
    backbone = fresh_backbone("smollm2-135m", torch.device("cpu"))
    model = method.build(backbone, task, method.hyperparameters())
    acc = evaluate(model, task, rows, split.train, SEED).metrics["acc"]
    # Measured: 0.823 on these 96 rows, majority class 0.604 (58 of 96 negative): a margin of
    # 0.22 (0.805 on the first 200 rows). Template "Review: {s1}\nSentiment:{mask}", label
    # words " negative" / " positive". Asserted with 0.10 of slack.
    assert majority == pytest.approx(58 / 96)
    assert acc >= majority + 0.12, f"zero-shot accuracy {acc:.3f}, majority {majority:.3f}"
