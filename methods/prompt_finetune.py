"""Prompt-based fine-tuning (PET / LM-BFF): all weights, manual template, the LM head read at
the answer position for the label words."""

from methods.base import Method, set_trainable, verbalizer_model
from methods.finetune import space  # the same search as full fine-tuning


def build(backbone, task, hp):
    model = verbalizer_model(backbone, task, hp)
    set_trainable(model, lambda name, p: True)
    return model


METHOD = Method(
    name="prompt-finetune",
    family="full",
    head="lm",
    build=build,
    space=space,
    summary="all weights; template + verbalizer on the LM head (LM-BFF manual prompt)",
    defaults={"lr": 1e-5},
)
