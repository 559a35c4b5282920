"""BitFit (Ben Zaken et al. 2022): only the backbone's bias terms, and the head."""

from methods.base import Method, head_model, set_trainable


def _is_bias(name: str) -> bool:
    return name.endswith(".bias")


def build(backbone, task, hp):
    model = head_model(backbone, task, hp)
    # With the LM head, its transform's biases (dense, LayerNorm) are bias terms too; the
    # vocabulary projection's bias stays frozen (only its label-word rows would ever move).
    classifier = hp["head"] == "classifier"
    heads = "head." if classifier else "head.transform."
    set_trainable(
        model,
        lambda name, p: (
            (name.startswith("body.") and _is_bias(name))
            or (name.startswith(heads) and (classifier or _is_bias(name)))
        ),
    )
    return model


def refuse(backbone, hp):
    if not any(_is_bias(n) for n, _ in backbone.model.base_model.named_parameters()):
        return (
            "it has no bias terms to tune (e.g. Llama-family models have none); "
            "use a BERT/RoBERTa-style backbone or another partial method (lora, head-only)"
        )
    return None


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [4, 8]),
    }


METHOD = Method(
    name="bitfit",
    family="partial",
    head="option",
    build=build,
    space=space,
    refuse=refuse,
    summary="bias terms of the backbone (and the classifier head) only",
    defaults={"lr": 1e-3, "head": "classifier"},
    choices={"head": ("classifier", "lm")},
)
