"""GPT-3-style in-context learning: demonstrations (training examples with their label words)
in the context, no training. On a causal LM they precede the query; on a masked LM they
follow it, as LM-BFF's in-context baseline does. Optional contextual calibration.

Demonstrations: ``demos_per_label`` per label, drawn for each test example by a generator
seeded from (cell seed, example index), and by default (``order=random``) shown in an order
that same generator shuffles. ``order=sorted`` keeps the label-sorted layout (label 0's, then
label 1's, ..., then the query): on a causal LM the last demonstration then always has the
same label, and the recency bias (Zhao et al. 2021) decides much of the prediction.
(LM-BFF's GPT-3 baseline samples its demonstrations without regard to label, in random order.)

Contextual calibration (``calibrate=true``) estimates the model's bias with the demonstrations
in the prompt, as Zhao et al. do: content-free inputs shown with demonstration sets drawn from
the train split like the test examples' (a ``search`` step, so the prior is in the record
under ``found``).
"""

from methods.base import Method, set_trainable, verbalizer_model
from methods.zero_shot import DEMO_DRAWS, calibrated, content_free_log_prior


def search(backbone, task, split, hp):
    """With ``calibrate``: the content-free prior with demonstrations from the K-shot train
    split (Zhao et al.: the same prompt, a content-free test input), computed once per cell.
    A prior without them would calibrate a different prompt from the one the model reads."""
    if not hp.get("calibrate"):
        return {}
    model = verbalizer_model(backbone, task, hp, demos=hp["demos_per_label"])
    prior = content_free_log_prior(model, task, split.train, split.seed)
    return {
        "content_free_log_prior": [round(float(x), 6) for x in prior],
        "content_free": f"N/A, empty, mask token; each with {DEMO_DRAWS} demonstration sets",
    }


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
    search=search,
    search_keys=("calibrate", "order", "demos_per_label", "prompt", "max_length", "verbalizer"),
)
