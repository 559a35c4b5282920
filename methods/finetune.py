"""Full fine-tuning with a classifier head (LM-BFF's "fine-tuning" baseline)."""

from methods.base import Method, classifier_model, set_trainable


def build(backbone, task, hp):
    model = classifier_model(backbone, task, hp)
    set_trainable(model, lambda name, p: True)
    return model


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-4, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [2, 4, 8]),
    }


METHOD = Method(
    name="finetune",
    family="full",
    head="classifier",
    build=build,
    space=space,
    summary="all weights and a classifier head on the first/last token",
    defaults={"lr": 1e-5},
)
