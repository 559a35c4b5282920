"""GPT-3-style in-context learning: demonstrations (training examples with their label words)
in the context, no training. On a causal LM they precede the query; on a masked LM they
follow it, as LM-BFF's in-context baseline does. Optional contextual calibration.

Demonstrations: ``demos_per_label`` per label, drawn for each test example by a generator
seeded from (cell seed, example index), and by default (``order=random``) shown in an order
that same generator shuffles. ``order=sorted`` keeps the label-sorted layout (label 0's, then
label 1's, ..., then the query): on a causal LM the last demonstration then always has the
same label, and the recency bias (Zhao et al. 2021) decides much of the prediction.
(LM-BFF's GPT-3 baseline samples its demonstrations without regard to label, in random order.)
"""

from methods.base import Method, set_trainable, verbalizer_model
from methods.zero_shot import calibrated


def build(backbone, task, hp):
    model = verbalizer_model(backbone, task, hp, demos=hp["demos_per_label"])
    model = calibrated(model, task, hp)
    set_trainable(model, lambda name, p: False, verbalizer=False)
    return model


def display(hp):
    name = "in-context+cc" if hp.get("calibrate") else "in-context"
    return name + ("+sorted" if hp.get("order") == "sorted" else "")


METHOD = Method(
    name="in-context",
    family="prompt",
    head="lm",
    build=build,
    trains=False,
    summary="demonstrations in the context, in random order, no training (GPT-3 style)",
    defaults={"demos_per_label": 2, "max_length": 512, "calibrate": False, "order": "random"},
    choices={"calibrate": (False, True), "order": ("random", "sorted")},
    display=display,
)
