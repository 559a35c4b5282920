"""LM-BFF prompt-based fine-tuning with demonstrations: one training example per label,
rendered with the template and its label word, joined to the input (sampled afresh for each
example every epoch in training; fixed per example at inference)."""

from methods.base import Method, set_trainable, verbalizer_model
from methods.prompt_finetune import space


def build(backbone, task, hp):
    model = verbalizer_model(backbone, task, hp, demos=hp["demos_per_label"])
    set_trainable(model, lambda name, p: True)
    return model


METHOD = Method(
    name="prompt-finetune-demo",
    family="full",
    head="lm",
    build=build,
    space=space,
    summary="prompt-based fine-tuning + one demonstration per label in the input (LM-BFF)",
    defaults={"lr": 1e-5, "demos_per_label": 1, "max_length": 256},
)
