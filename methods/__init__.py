"""Method plugins. Adding a method = one module in this folder + one line below."""

from __future__ import annotations

from bench.errors import unknown
from methods import (
    bitfit,
    finetune,
    head_only,
    in_context,
    lora,
    prompt_finetune,
    prompt_finetune_demo,
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


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise unknown("method", name, REGISTRY)
    return REGISTRY[name]
