"""Frozen backbone, trained classifier head (traditional partial fine-tuning; a probe).
The frozen trunk runs once per split: its features are cached and reused by every trial."""

from methods.base import Method, classifier_model, set_trainable


def build(backbone, task, hp):
    model = classifier_model(backbone, task, hp)
    set_trainable(model, lambda name, p: name.startswith("head."))
    return model


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [4, 8, 16]),
    }


METHOD = Method(
    name="head-only",
    family="partial",
    head="classifier",
    build=build,
    space=space,
    summary="frozen backbone; classifier head only (features computed once)",
    defaults={"lr": 1e-3, "steps": 200, "eval_every": 20},
)
