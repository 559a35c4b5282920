"""Method plugins. Adding a method = one module in this folder + one line below.

Holds: ``base`` (the ``Method`` protocol and shared builders), one module per method, and the
machinery they share: ``prompting/`` (soft-prompt modules, search helpers) and
``verbalizers/``.
May import: ``bench.engine``, ``bench.backbones``, ``bench.core``, ``tasks``; never
``bench.run``, ``bench.sweep``, ``bench.report`` or ``bench.cli``.
"""

from __future__ import annotations

from bench.core.errors import unknown
from methods import (
    autoprompt,
    bitfit,
    finetune,
    head_only,
    in_context,
    lmbff_auto_label,
    lmbff_auto_template,
    lora,
    p_tuning,
    p_tuning_v2,
    prefix_tuning,
    prompt_finetune,
    prompt_finetune_demo,
    prompt_tuning,
    ptr,
    zero_shot,
)
from methods.base import Method

REGISTRY: dict[str, Method] = {}


def register(method: Method) -> None:
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} is registered twice")
    REGISTRY[method.name] = method


register(finetune.METHOD)
register(prompt_finetune.METHOD)
register(prompt_finetune_demo.METHOD)
register(head_only.METHOD)
register(bitfit.METHOD)
register(lora.METHOD)
register(zero_shot.METHOD)
register(in_context.METHOD)
register(prompt_tuning.METHOD)
register(p_tuning.METHOD)
register(p_tuning.FULL)
register(prefix_tuning.METHOD)
register(p_tuning_v2.METHOD)
register(autoprompt.METHOD)
register(lmbff_auto_label.METHOD)
register(ptr.METHOD)
register(lmbff_auto_template.METHOD)


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise unknown("method", name, REGISTRY)
    return REGISTRY[name]
