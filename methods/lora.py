"""LoRA (Hu et al. 2021) via PEFT on the attention query/value projections, with either a
classifier head or the LM head (a method option)."""

from peft import LoraConfig, inject_adapter_in_model

from methods.base import Method, head_model, set_trainable

# The LoRA paper's placement: the attention query and value projections.
TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "llama": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
}


def build(backbone, task, hp):
    kind = backbone.model.config.model_type
    config = LoraConfig(
        r=hp["r"],
        lora_alpha=hp["alpha"],
        lora_dropout=hp["dropout"],
        target_modules=TARGETS.get(kind, ["q_proj", "v_proj"]),
    )
    inject_adapter_in_model(config, backbone.model)
    model = head_model(backbone, task, hp)
    head_trains = hp["head"] == "classifier"
    set_trainable(
        model, lambda name, p: "lora_" in name or (head_trains and name.startswith("head."))
    )
    return model


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [4, 8]),
    }


METHOD = Method(
    name="lora",
    family="partial",
    head="option",
    build=build,
    space=space,
    summary="low-rank adapters on attention query/value (PEFT), + classifier head or LM head",
    defaults={"lr": 5e-4, "r": 8, "alpha": 16, "dropout": 0.1, "head": "classifier"},
    choices={"head": ("classifier", "lm")},
)
