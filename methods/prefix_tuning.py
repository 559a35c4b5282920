"""Prefix-tuning (Li & Liang 2021): N trainable keys and values before the sequence in every
layer, produced during training through the reparameterising MLP (embedding (N, D) -> ``mlp``
units -> layers*2*D, D = key/value width); the backbone frozen. The LM head read at the answer
position for the label words, or a classifier head (option ``head``)."""

import torch

from methods.base import Method, adapter_and_classifier, head_model, set_trainable
from methods.prompting.adapters import KVPrefix, cache_kwarg, position_offset


def build(backbone, task, hp):
    config = backbone.model.config
    with torch.device(backbone.model.device):  # meta for parameter counts
        adapter = KVPrefix(
            hp["tokens"],
            config,
            position_offset(config),
            mlp=hp["mlp"],
            cache_kwarg=cache_kwarg(backbone.model.base_model),
        )
    model = head_model(backbone, task, hp, adapter=adapter)
    set_trainable(model, adapter_and_classifier(hp))
    return model


def refuse(backbone, hp):
    if cache_kwarg(backbone.model.base_model) is None:
        return "its forward takes no key/value cache to put a prefix in"
    return None


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 2e-5, 1e-3, log=True),
        "tokens": trial.suggest_categorical("tokens", [5, 10, 20]),
    }


METHOD = Method(
    name="prefix-tuning",
    family="prompt",
    head="option",
    build=build,
    space=space,
    refuse=refuse,
    summary="trainable key/value prefixes at every layer through an MLP (Li & Liang 2021)",
    defaults={"lr": 1e-4, "tokens": 10, "mlp": 512, "head": "lm"},
    choices={"head": ("lm", "classifier")},
)
