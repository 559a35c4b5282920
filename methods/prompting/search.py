"""What the searched-prompt methods share: the hidden states a frozen model has at the answer
position, the full-vocabulary distribution there, the clean whole words of a vocabulary, and
zero-shot scores of label words. Searches read only the K-shot train and dev examples."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from bench.core.errors import BackboneError
from bench.engine import data
from bench.engine.model import TaskModel
from bench.engine.prompts import Tokens
from bench.engine.train import task_metrics
from tasks import Example, Task


def frozen(model: TaskModel) -> TaskModel:
    """The model with nothing trainable, in eval mode (a search changes no weight)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@torch.no_grad()
def answer_states(
    model: TaskModel, examples: Sequence[Example], batch_size: int = 32
) -> torch.Tensor:
    """Hidden states at the answer position, (N, H), in the order of ``examples``."""
    items = [model.encoder.encode(ex) for ex in examples]
    out = [None] * len(items)
    order = data.eval_order([len(e.ids) for e in items], batch_size)
    for idx, batch in data.batches(items, examples, order, model.pad_id):
        for i, h in zip(idx, model.features(model.on_device(batch))):
            out[i] = h
    return torch.stack(out).float()


@torch.no_grad()
def vocab_log_probs(model: TaskModel, states: torch.Tensor) -> torch.Tensor:
    """The LM head over the whole vocabulary at those states, as log-probabilities, (N, V),
    on the CPU (the searches index and rank them there)."""
    head = model.head  # a VerbalizerHead: the LM head's transform and output rows
    logits = head.transform(states) @ head.weight.T  # (N, V)
    if head.bias is not None:
        logits = logits + head.bias
    return logits.float().log_softmax(-1).cpu()


def whole_word(tokens: Tokens, token_id: int) -> str | None:
    """The word a vocabulary token stands for if it is a clean whole word (letters only) that
    a verbalizer renders back as exactly this token; else None. Sub-word pieces ("##ing", or a
    BPE token without its leading space) do not render back and are left out."""
    text = tokens.tok.decode([token_id]).strip()
    if not text.isalpha():
        return None
    try:
        return text if tokens.word_id(text) == token_id else None
    except BackboneError:  # more than one token
        return None


def first_words(
    tokens: Tokens, ranked: Iterable[int], k: int, exclude: Iterable[int] = ()
) -> list[tuple[int, str]]:
    """The first ``k`` clean whole words among ``ranked`` token ids (best first)."""
    skip = set(exclude) | set(getattr(tokens.tok, "all_special_ids", []))
    out = []
    for i in ranked:
        i = int(i)
        if i in skip:
            continue
        word = whole_word(tokens, i)
        if word is not None:
            out.append((i, word))
            if len(out) == k:
                break
    return out


def class_scores_metrics(task: Task, logits: torch.Tensor, examples: Sequence[Example]) -> dict:
    """The task's metrics and mean loss of class scores (N, C), as ``bench.engine.train.evaluate``
    computes them (STS-B: score = 5 * p(label 1))."""
    logits = logits.float().cpu()  # the targets are built on the CPU
    probs = logits.softmax(-1)
    if task.regression:
        s = torch.tensor([(e.score or 0.0) / 5.0 for e in examples]).clamp(0, 1)
        target = torch.stack([1 - s, s], -1)
    else:
        target = torch.tensor([e.label for e in examples])
    loss = torch.nn.functional.cross_entropy(logits, target).item()
    return {**task_metrics(task, probs.numpy(), examples), "loss": loss}


def ranking_key(task: Task, scores: dict) -> tuple[float, float]:
    """Higher is better: the primary metric, then the lower loss."""
    return (scores[task.metrics[0]], -scores["loss"])


def labels_array(examples: Sequence[Example]) -> np.ndarray:
    return np.array([e.label for e in examples])
