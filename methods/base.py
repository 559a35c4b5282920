"""The method protocol: what every method plugin declares, and the builders they share.

A method is a ``Method`` record: name, family, which head it reads, hyperparameter defaults
(with method options), a search space, a refusal rule, and ``build(backbone, task, hp)`` that
returns a ``TaskModel`` whose trainable parameters are exactly the method's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from bench.backbones import Backbone
from bench.errors import BackboneError, TunebenchError, unknown
from bench.model import ClassifierHead, TaskModel, VerbalizerHead
from bench.prompts import Encoder, Renderer
from bench.train import Hyper
from tasks import Prompt, Task

FAMILIES = ("full", "partial", "prompt")

# Hyperparameters every method has (the training loop's), with CPU-sized defaults; paper
# protocols (LM-BFF: 1,000 steps, eval every 100) are set by sweep profiles.
COMMON: dict = {
    **{k: f.default for k, f in Hyper.__dataclass_fields__.items()},
    "prompt": "auto",  # a named prompt variant of the task; auto = "causal" on a causal LM if any
    "max_length": 0,  # 0 = the task's
}


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    summary: str
    build: Callable[[Backbone, Task, dict], TaskModel]
    head: str  # "classifier", "lm", or "option" (the ``head`` option picks)
    trains: bool = True
    defaults: Mapping = field(default_factory=dict)  # overrides of COMMON, and method options
    choices: Mapping = field(default_factory=dict)  # option -> allowed values
    space: Callable | None = None  # optuna.Trial -> dict of hyperparameters
    refuse: Callable[[Backbone, dict], str | None] = lambda backbone, hp: None
    display: Callable[[Mapping], str] | None = None  # name in tables, from the options

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name}: family must be one of {FAMILIES}")

    def hyperparameters(self, overrides: Mapping | None = None) -> dict:
        """Defaults updated by ``overrides`` (values cast to the default's type), validated."""
        hp = {**COMMON, **self.defaults}
        for key, value in (overrides or {}).items():
            if key not in hp:
                raise unknown(f"setting of method {self.name}", key, hp)
            hp[key] = _cast(value, hp[key], key)
        for key, allowed in self.choices.items():
            if hp[key] not in allowed:
                raise TunebenchError(
                    f"method {self.name}: {key}={hp[key]!r} is not allowed; choose one of {list(allowed)}"
                )
        return hp

    def reads_lm_head(self, hp: Mapping) -> bool:
        return self.head == "lm" or (self.head == "option" and hp.get("head") == "lm")

    def check(self, backbone: Backbone, hp: Mapping) -> None:
        """Refuse, with the reason, what cannot run: an LM-head method on an encoder, etc."""
        if self.reads_lm_head(hp) and backbone.kind == "encoder":
            raise BackboneError(
                f"method {self.name} reads the LM head, and backbone {backbone.name} is an encoder "
                "without one; use an mlm or causal backbone"
                + (" or set head=classifier" if self.head == "option" else "")
            )
        reason = self.refuse(backbone, hp)
        if reason:
            raise BackboneError(
                f"method {self.name} cannot run on backbone {backbone.name}: {reason}"
            )

    def label(self, hp: Mapping) -> str:
        """The name shown in records and tables (options that change the method show)."""
        name = self.display(hp) if self.display else self.name
        if self.head == "option" and hp.get("head") != self.defaults.get("head"):
            name += "+lm-head" if hp.get("head") == "lm" else "+cls-head"  # not the usual head
        return name


def _cast(value, default, key):
    if isinstance(value, str) and not isinstance(default, str):
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return type(default)(float(value)) if isinstance(default, int) else type(default)(value)
        except ValueError:
            raise TunebenchError(
                f"setting {key}={value!r}: expected a {type(default).__name__}"
            ) from None
    return value


# --- shared builders -------------------------------------------------------------------


def task_prompt(backbone: Backbone, task: Task, hp: Mapping) -> Prompt:
    name = hp.get("prompt", "auto")
    if name == "auto":
        name = "causal" if backbone.kind == "causal" and "causal" in task.prompts else "default"
    return task.prompt_variant(name)


def renderer(
    backbone: Backbone,
    task: Task,
    hp: Mapping,
    style: str,
    demos: int = 0,
    prompt: Prompt | None = None,
) -> Renderer:
    """``prompt``: a method's own version of the task's prompt (e.g. with pseudo tokens)."""
    if style == "prompt" and prompt is None:
        prompt = task_prompt(backbone, task, hp)
    return Renderer(
        style=style,
        prompt=prompt,
        demos_per_label=demos,
        max_length=hp.get("max_length") or task.max_length,
    )


def set_trainable(model: nn.Module, predicate: Callable[[str, nn.Parameter], bool]) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(predicate(name, p))


def adapter_and_classifier(hp: Mapping) -> Callable[[str, nn.Parameter], bool]:
    """What an input or attention method trains: its adapter, and the classifier head if it
    has one (an LM head stays frozen)."""
    head = hp.get("head") == "classifier"
    return lambda name, p: name.startswith("adapter.") or (head and name.startswith("head."))


def classifier_model(backbone: Backbone, task: Task, hp: Mapping, *, adapter=None) -> TaskModel:
    """Plain input, classifier head on the first token (mlm/encoder) or last token (causal)."""
    enc = Encoder(backbone.tokenizer, backbone.kind, task, renderer(backbone, task, hp, "plain"))
    hidden = backbone.model.config.hidden_size
    head = ClassifierHead(hidden, task.num_labels).to(_device(backbone))
    return TaskModel(backbone, enc, head, adapter=adapter, regression=task.regression)


def verbalizer_model(
    backbone: Backbone,
    task: Task,
    hp: Mapping,
    *,
    demos: int = 0,
    adapter=None,
    head: nn.Module | None = None,
    prompt: Prompt | None = None,
) -> TaskModel:
    """Template input, the LM head read at the answer position for the label words (or
    another ``head`` read there)."""
    r = renderer(backbone, task, hp, "prompt", demos, prompt)
    enc = Encoder(backbone.tokenizer, backbone.kind, task, r)
    head = head if head is not None else VerbalizerHead(backbone.model, enc.word_ids)
    return TaskModel(backbone, enc, head, adapter=adapter, regression=task.regression)


def head_model(backbone: Backbone, task: Task, hp: Mapping, **kw) -> TaskModel:
    """The head a method option picks: ``hp["head"]`` = "classifier" or "lm"."""
    if hp.get("head", "classifier") == "lm":
        return verbalizer_model(backbone, task, hp, **kw)
    return classifier_model(backbone, task, hp, **kw)


def _device(backbone: Backbone) -> torch.device:
    return next(backbone.model.parameters()).device
