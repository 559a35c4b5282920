"""Parameter counts of a method on a backbone built on the meta device (no weights)."""

from __future__ import annotations

from bench.backbones.catalog import Backbone, build_meta, get_spec
from bench.engine.measure import parameter_report
from methods.base import Method
from tasks import Task


class _NoTokenizer:
    """Stands in for a tokenizer when only shapes matter: every label word is token 0."""

    mask_token_id = pad_token_id = eos_token_id = sep_token_id = 0
    mask_token = "[MASK]"


def meta_backbone(name: str) -> Backbone:
    spec = get_spec(name)
    model = build_meta(name)
    if spec.kind == "?":
        spec = get_spec(name)
    return Backbone(spec, model, _NoTokenizer())


def count_method_params(backbone_name: str, method: Method, task: Task, overrides: dict) -> dict:
    backbone = meta_backbone(backbone_name)
    hp = method.hyperparameters(overrides)
    method.check(backbone, hp)
    total = backbone.num_parameters()
    model = method.build(backbone, task, hp)
    return {**parameter_report(model, total), "label": method.label(hp)}
