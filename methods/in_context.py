"""GPT-3-style in-context learning: demonstrations (training examples with their label words)
in the context, no training. On a causal LM they precede the query; on a masked LM they
follow it, as LM-BFF's in-context baseline does. Optional contextual calibration."""

from methods.base import Method, set_trainable, verbalizer_model
from methods.zero_shot import calibrated


def build(backbone, task, hp):
    model = verbalizer_model(backbone, task, hp, demos=hp["demos_per_label"])
    model = calibrated(model, task, hp)
    set_trainable(model, lambda name, p: False, verbalizer=False)
    return model


METHOD = Method(
    name="in-context",
    family="prompt",
    head="lm",
    build=build,
    trains=False,
    summary="demonstrations in the context, no training (GPT-3 style)",
    defaults={"demos_per_label": 2, "max_length": 512, "calibrate": False},
    choices={"calibrate": (False, True)},
    display=lambda hp: "in-context+cc" if hp.get("calibrate") else "in-context",
)
