"""The method protocol: what every method plugin declares, and the builders they share.

A method is a ``Method`` record: name, family, which head it reads, hyperparameter defaults
(with method options), a search space, a refusal rule, and ``build(backbone, task, hp)`` that
returns a ``TaskModel`` whose trainable parameters are exactly the method's.

Two optional hooks, used by the searched-prompt methods and the verbalizers:

- ``search(backbone, task, split, hp) -> dict`` runs before ``build`` on the cell's K-shot
  train/dev data (never test) and returns what it *found*: ``template`` / ``words`` (then
  every builder reads that prompt instead of the task's, see ``task_prompt``), anything else
  a build needs, and what the record should keep (candidates and their scores). The runner
  passes it to ``build`` as ``hp["found"]``, times it and caches it per cell and per the
  hyperparameters named in ``search_keys``, so a sweep's trials search once.
- ``verbalizer`` (a hyperparameter of every method that reads the LM head; ``manual`` by
  default) picks how label words become class scores; see ``methods.verbalizers.registry``.
- ``pooling`` (a hyperparameter of every method with a pooled classifier head): what the head
  reads, ``auto`` (the backbone's: ``Backbone.pooling``), ``cls``, ``mean`` or ``last``; a
  value other than ``auto`` shows in the label (``head-only+mean-pool``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from bench.backbones.catalog import POOLINGS, Backbone
from bench.core import validate
from bench.core.errors import BackboneError, TunebenchError, unknown
from bench.engine.model import ClassifierHead, TaskModel
from bench.engine.precision import CHOICES as PRECISIONS
from bench.engine.prompts import Encoder, renderer, task_prompt  # noqa: F401 (the methods' API)
from bench.engine.train import Hyper
from methods.verbalizers.registry import VERBALIZERS, get_verbalizer
from tasks import Prompt, Task

FAMILIES = ("full", "partial", "prompt")

# Hyperparameters every method has (the training loop's, ``precision`` included), with
# CPU-sized defaults; paper protocols (LM-BFF: 1,000 steps, eval every 100) are set by sweep
# profiles.
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
    search: Callable | None = None  # (backbone, task, split, hp) -> found dict; see above
    search_keys: tuple[str, ...] = ()  # the hyperparameters a search depends on
    refuse_task: Callable[[Task], str | None] = lambda task: None  # e.g. ptr: no rules
    pooled: bool = True  # its classifier head (if any) reads a pooled state: ``pooling``

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name}: family must be one of {FAMILIES}")

    @property
    def may_read_lm_head(self) -> bool:
        return self.head in ("lm", "option")

    @property
    def has_pooling(self) -> bool:
        return self.pooled and self.head in ("classifier", "option")

    def hyperparameters(self, overrides: Mapping | None = None, source: str = "--set") -> dict:
        """Defaults updated by ``overrides`` (values parsed as the default's type, checked by
        ``bench.core.validate.setting``; ``source`` names where they came from)."""
        hp = {**COMMON, **self.defaults}
        if self.has_pooling:
            hp.setdefault("pooling", "auto")
        if self.may_read_lm_head:
            hp.setdefault("verbalizer", "manual")
            for v in VERBALIZERS.values():
                for key, value in (v.defaults or {}).items():
                    hp.setdefault(key, value)
        for key, value in (overrides or {}).items():
            if key not in hp:
                raise unknown(f"setting of method {self.name}", key, hp)
            hp[key] = validate.setting(key, value, hp[key], source)
        for key, allowed in self.choices.items():
            if hp[key] not in allowed:
                raise TunebenchError(
                    f"{source} {key}={hp[key]!r} is not allowed for method {self.name}; "
                    f"choose one of {list(allowed)}"
                )
        if hp["precision"] not in PRECISIONS:
            raise TunebenchError(
                f"method {self.name}: precision={hp['precision']!r} is not allowed; choose one "
                f"of {list(PRECISIONS)} (auto: bf16 where the hardware has it, else fp32)"
            )
        if "verbalizer" in hp:
            get_verbalizer(hp["verbalizer"])  # unknown -> the list of choices
        if "pooling" in hp and hp["pooling"] not in ("auto", *POOLINGS):
            raise TunebenchError(
                f"method {self.name}: pooling={hp['pooling']!r} is not allowed; choose one of "
                f"{['auto', *POOLINGS]}"
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
        verbalizer = hp.get("verbalizer", "manual")
        if verbalizer != "manual" and not self.reads_lm_head(hp):
            raise TunebenchError(
                f"method {self.name}: verbalizer={verbalizer} needs the LM head; set head=lm "
                "or verbalizer=manual"
            )
        if get_verbalizer(verbalizer).needs_training and not self.trains:
            raise TunebenchError(
                f"method {self.name} does not train, and verbalizer {verbalizer} is learned; "
                f"choose one of {[v.name for v in VERBALIZERS.values() if not v.needs_training]}"
            )
        if hp.get("pooling", "auto") != "auto" and self.reads_lm_head(hp):
            raise TunebenchError(
                f"method {self.name}: pooling={hp['pooling']} needs a classifier head (the LM "
                "head reads the answer position); set head=classifier or pooling=auto"
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
        if hp.get("verbalizer", "manual") != "manual":
            name += "+" + hp["verbalizer"]
        if hp.get("pooling", "auto") != "auto":
            name += f"+{hp['pooling']}-pool"
        return name


# --- shared builders -------------------------------------------------------------------


def set_trainable(
    model: nn.Module, predicate: Callable[[str, nn.Parameter], bool], *, verbalizer: bool = True
) -> None:
    """Trainable = ``predicate``, plus a learned verbalizer's parameters (``head.learned``)
    unless ``verbalizer=False`` (methods that do not train)."""
    for name, p in model.named_parameters():
        learned = verbalizer and name.startswith("head.") and ".learned." in name
        p.requires_grad_(predicate(name, p) or learned)


def adapter_and_classifier(hp: Mapping) -> Callable[[str, nn.Parameter], bool]:
    """What an input or attention method trains: its adapter, and the classifier head if it
    has one (an LM head stays frozen)."""
    head = hp.get("head") == "classifier"
    return lambda name, p: name.startswith("adapter.") or (head and name.startswith("head."))


def pooling(backbone: Backbone, hp: Mapping) -> str:
    """What the classifier head reads: ``hp["pooling"]``, ``auto`` being the backbone's."""
    value = hp.get("pooling", "auto")
    return backbone.pooling if value == "auto" else value


def classifier_model(backbone: Backbone, task: Task, hp: Mapping, *, adapter=None) -> TaskModel:
    """Plain input, classifier head on the pooled state: [CLS] (mlm), the mean of the tokens
    (sentence encoders), the last non-pad token (causal), or what ``pooling`` says."""
    pool = pooling(backbone, hp)
    r = renderer(backbone, task, hp, "plain", pooling=pool)
    enc = Encoder(backbone.tokenizer, backbone.kind, task, r)
    hidden = backbone.model.config.hidden_size
    head = ClassifierHead(hidden, task.num_labels).to(_device(backbone))
    return TaskModel(backbone, enc, head, adapter=adapter, regression=task.regression, pooling=pool)


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
    if head is None:
        head = get_verbalizer(hp.get("verbalizer", "manual")).head(backbone.model, enc, task, hp)
    return TaskModel(backbone, enc, head, adapter=adapter, regression=task.regression)


def head_model(backbone: Backbone, task: Task, hp: Mapping, **kw) -> TaskModel:
    """The head a method option picks: ``hp["head"]`` = "classifier" or "lm"."""
    if hp.get("head", "classifier") == "lm":
        return verbalizer_model(backbone, task, hp, **kw)
    return classifier_model(backbone, task, hp, **kw)


def _device(backbone: Backbone) -> torch.device:
    return next(backbone.model.parameters()).device
