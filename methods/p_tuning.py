"""P-tuning (Liu et al. 2021, "GPT Understands, Too"): pseudo tokens placed in the template,
produced by a prompt encoder (a bidirectional LSTM and an MLP over trainable embeddings, or an
MLP: option ``encoder``), so they are not independent. The template keeps the task's words as
anchors and gains pseudo tokens (option ``pseudo`` = "a,b,c"): a before it, b after the first
sentence, c right before the answer.

Two settings, two methods, named apart in every record and table because papers report both
under one name: ``p-tuning``, the backbone frozen (as P-Tuning v2 compares it), and
``p-tuning-full``, the backbone tuned too (the original few-shot SuperGLUE runs).
"""

from functools import partial

import torch

from bench.core.errors import TunebenchError
from bench.engine.model import ClassifierHead
from bench.engine.prompts import PSEUDO, with_pseudo_tokens
from methods.base import (
    Method,
    adapter_and_classifier,
    set_trainable,
    task_prompt,
    verbalizer_model,
)
from methods.prompting.adapters import PseudoTokens, position_offset


def layout(hp) -> tuple[int, int, int]:
    """The ``pseudo`` option: pseudo tokens before the template, after s1, before the answer."""
    try:
        counts = tuple(int(x) for x in str(hp["pseudo"]).split(","))
    except ValueError:
        counts = ()
    if len(counts) != 3 or min(counts) < 0 or sum(counts) == 0:
        raise TunebenchError(
            f"p-tuning pseudo={hp['pseudo']!r}: expected three counts a,b,c (before the "
            "template, after the first sentence, before the answer), e.g. 3,3,3"
        )
    return counts


def build(backbone, task, hp, *, tune_backbone: bool):
    config = backbone.model.config
    prompt = with_pseudo_tokens(task_prompt(backbone, task, hp), *layout(hp))
    rendered = prompt.template.split("{mask}")[0] if backbone.kind == "causal" else prompt.template
    with torch.device(backbone.model.device):  # meta for parameter counts
        adapter = PseudoTokens(
            rendered.count(PSEUDO),  # a causal LM's input ends at the answer
            config.hidden_size,
            position_offset(config),
            encoder=hp["encoder"],
            width=hp["encoder_width"],
        )
    head = None
    if hp["head"] == "classifier":  # read at the answer position, like the LM head
        head = ClassifierHead(config.hidden_size, task.num_labels).to(backbone.model.device)
    model = verbalizer_model(backbone, task, hp, adapter=adapter, head=head, prompt=prompt)
    set_trainable(model, (lambda name, p: True) if tune_backbone else adapter_and_classifier(hp))
    return model


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "pseudo": trial.suggest_categorical("pseudo", ["1,1,1", "3,3,3", "4,4,4"]),
    }


def space_full(trial):
    return {
        "lr": trial.suggest_float("lr", 5e-6, 5e-5, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [4, 8]),
    }


OPTIONS = {"pseudo": "3,3,3", "encoder": "lstm", "encoder_width": 0, "head": "lm"}
CHOICES = {"encoder": ("lstm", "mlp"), "head": ("lm", "classifier")}

METHOD = Method(
    name="p-tuning",
    family="prompt",
    head="option",
    pooled=False,  # its classifier head reads the answer position
    build=partial(build, tune_backbone=False),
    space=space,
    summary="pseudo tokens in the template from an LSTM/MLP prompt encoder, backbone frozen",
    defaults={"lr": 3e-3, **OPTIONS},
    choices=CHOICES,
)

FULL = Method(
    name="p-tuning-full",
    family="full",
    head="option",
    pooled=False,  # its classifier head reads the answer position
    build=partial(build, tune_backbone=True),
    space=space_full,
    summary="P-tuning with the backbone tuned too (the original few-shot SuperGLUE setting)",
    defaults={"lr": 1e-5, **OPTIONS},
    choices=CHOICES,
)
