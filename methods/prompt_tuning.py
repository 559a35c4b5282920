"""Prompt tuning (Lester et al. 2021): N independent trainable vectors before the input
embeddings, the backbone frozen; the LM head read at the answer position for the label words,
or a classifier head (option ``head``).

The vectors start (option ``init``) as: ``labels``, the label words' embeddings, then sampled
vocabulary for the rest (the paper's best); ``vocab``, embeddings of random vocabulary tokens;
``text``, the word embeddings of ``init_text`` without special tokens, repeated to fill N; or
``random``, Gaussian at the scale of the vocabulary's embeddings.
"""

import torch

from bench.core.errors import TunebenchError
from bench.engine.prompts import Tokens
from methods.base import Method, adapter_and_classifier, head_model, set_trainable, task_prompt
from methods.prompting.adapters import PromptVectors, position_offset


def initial_vectors(backbone, task, hp) -> torch.Tensor:
    """(N, H) starting vectors; on the meta device (parameter counts) only the shape is real."""
    table = backbone.model.get_input_embeddings().weight.detach()  # (V, H)
    n, how = hp["tokens"], hp["init"]
    if how == "random":
        return torch.randn(n, table.shape[1], device=table.device) * table.std()
    rows = table[_vocab_sample(backbone.tokenizer, table.shape[0], n)].clone()  # (N, H)
    if how == "vocab" or table.is_meta:
        return rows
    tokens = Tokens(backbone.tokenizer, backbone.kind)
    if how == "text":
        ids = list(tokens(hp["init_text"]))
        if not ids:
            raise TunebenchError("prompt-tuning init=text needs the text: set init_text=...")
        return table[(ids * (n // len(ids) + 1))[:n]].clone()
    words = task_prompt(backbone, task, hp).words  # init == "labels"
    labels = [table[list(tokens(" " + w))].mean(0) for w in words][:n]  # multi-token: mean
    rows[: len(labels)] = torch.stack(labels)
    return rows


def _vocab_sample(tokenizer, vocab_size: int, n: int) -> torch.Tensor:
    """``n`` token ids drawn uniformly from the vocabulary, special tokens excluded."""
    keep = torch.ones(vocab_size, dtype=torch.bool)
    keep[[i for i in getattr(tokenizer, "all_special_ids", []) if i < vocab_size]] = False
    allowed = keep.nonzero().squeeze(1)
    return allowed[torch.randint(len(allowed), (n,))]


def build(backbone, task, hp):
    vectors = initial_vectors(backbone, task, hp)
    adapter = PromptVectors(vectors, position_offset(backbone.model.config))
    model = head_model(backbone, task, hp, adapter=adapter)
    set_trainable(model, adapter_and_classifier(hp))
    return model


def space(trial):
    return {
        "lr": trial.suggest_float("lr", 3e-3, 1e-1, log=True),
        "tokens": trial.suggest_categorical("tokens", [10, 20, 50]),
        "init": trial.suggest_categorical("init", ["labels", "vocab"]),
    }


METHOD = Method(
    name="prompt-tuning",
    family="prompt",
    head="option",
    build=build,
    space=space,
    summary="N trainable input vectors before the text, backbone frozen (Lester et al. 2021)",
    defaults={"lr": 3e-2, "tokens": 20, "init": "labels", "init_text": "", "head": "lm"},
    choices={"init": ("labels", "vocab", "text", "random"), "head": ("lm", "classifier")},
)
