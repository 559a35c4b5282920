"""P-Tuning v2 (Liu et al. 2022): deep prompts, N trainable keys and values before the sequence
at every layer, without reparameterisation (layers*2*N*D parameters, D = key/value width), the
backbone frozen; a classifier head by default, or the LM head with the verbalizer (option
``head``)."""

import torch

from bench.adapters import KVPrefix, cache_kwarg, position_offset
from methods.base import Method, adapter_and_classifier, head_model, set_trainable
from methods.prefix_tuning import refuse


def build(backbone, task, hp):
    config = backbone.model.config
    with torch.device(backbone.model.device):  # meta for parameter counts
        adapter = KVPrefix(
            hp["tokens"],
            config,
            position_offset(config),
            cache_kwarg=cache_kwarg(backbone.model.base_model),
        )
    model = head_model(backbone, task, hp, adapter=adapter)
    set_trainable(model, adapter_and_classifier(hp))
    return model


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-3, 3e-2, log=True),
        "tokens": trial.suggest_categorical("tokens", [8, 16, 32]),
    }


METHOD = Method(
    name="p-tuning-v2",
    family="prompt",
    head="option",
    build=build,
    space=space,
    refuse=refuse,
    summary="deep prompts: key/value prefixes at every layer, no reparameterisation",
    defaults={"lr": 1e-2, "tokens": 20, "head": "classifier"},
    choices={"head": ("classifier", "lm")},
)
