"""LM-BFF prompt-based fine-tuning with demonstrations: one training example per label,
rendered with the template and its label word, joined to the input (sampled afresh for each
example every epoch in training; fixed per example at inference).

The order policy (``order``), checked against LM-BFF's ``src/dataset.py``: LM-BFF samples one
demonstration per label for each example (a random permutation of the training set, the first
example of each label) and concatenates them in label order after the query. ``auto`` (the
default) does exactly that on a masked LM (``sorted``); on a causal LM the demonstrations come
*before* the query, where a fixed label order puts the same label right before it every time,
so ``auto`` shuffles them there (``random``, per example, seeded). Either can be forced.
Unlike LM-BFF, inference uses one sample of demonstrations per example, not an ensemble of 16.
"""

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
    defaults={"lr": 1e-5, "demos_per_label": 1, "max_length": 256, "order": "auto"},
    choices={"order": ("auto", "random", "sorted")},
    display=lambda hp: (
        "prompt-finetune-demo" + ("" if hp.get("order", "auto") == "auto" else f"+{hp['order']}")
    ),
)
