"""P-Tuning v2 (Liu et al. 2022): deep prompts, N trainable keys and values before the sequence
at every layer, without reparameterisation (layers*2*N*D parameters, D = key/value width), the
backbone frozen; a classifier head by default, or the LM head with the verbalizer (option
``head``).

The prefix starts (option ``init``) as ``text``: the keys and values the backbone computes for
a text (``init_text``, by default the words of the task's template, repeated to N tokens), as
if it came before every input; or ``random``: N(0, 1), as the paper's code and PEFT do, which
scrambles a small model's attention (SmolLM2-135M's SST-2 accuracy falls to chance) before
training starts.
"""

import torch

from bench.engine.prompts import SLOT, Tokens
from methods.base import Method, adapter_and_classifier, head_model, set_trainable, task_prompt
from methods.prefix_tuning import refuse
from methods.prompting.adapters import KVPrefix, cache_kwarg, position_offset


def start_ids(backbone, task, hp) -> list[int]:
    """N token ids of the starting text (no special tokens), repeated to fill N."""
    text = hp["init_text"] or " ".join(
        SLOT.sub(" ", task_prompt(backbone, task, hp).template).split()
    )
    ids = list(Tokens(backbone.tokenizer, backbone.kind)(text))
    n = hp["tokens"]
    return (ids * (n // max(len(ids), 1) + 1))[:n]


def build(backbone, task, hp):
    config, body = backbone.model.config, backbone.model.base_model
    with torch.device(backbone.model.device):  # meta for parameter counts
        adapter = KVPrefix(
            hp["tokens"], config, position_offset(config), cache_kwarg=cache_kwarg(body)
        )
    if hp["init"] == "text" and backbone.model.device.type != "meta":
        adapter.start_from_text(body, start_ids(backbone, task, hp))
    model = head_model(backbone, task, hp, adapter=adapter)
    set_trainable(model, adapter_and_classifier(hp))
    return model


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
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
    defaults={"lr": 1e-3, "tokens": 20, "init": "text", "init_text": "", "head": "classifier"},
    choices={"init": ("text", "random"), "head": ("classifier", "lm")},
)
