"""LM-BFF's automatic label-word search (Gao et al. 2021, section 5.1), then prompt-based
fine-tuning (as ``prompt-finetune``) with the words it chose.

With the task's template and the frozen backbone, on the K-shot data only:

1. for each class, the ``label_topk`` clean whole words (one token each, letters only) with
   the highest log-probability at the answer position averaged over that class's training
   examples;
2. every assignment of one candidate word per class (distinct words) scored zero-shot on the
   training set (accuracy, ties by likelihood); the ``label_assignments`` best kept;
3. those scored zero-shot on the dev set (the task's primary metric, then loss); the best wins.

LM-BFF fine-tunes every one of the n assignments and re-ranks them on dev; here step 3 scores
them zero-shot (one forward pass over train and dev serves the whole search), so the search
costs about one dev evaluation. With many classes the assignments are enumerated only up to
200,000: the per-class lists are cut to the largest equal length that fits (recorded).

Training defaults are the ``cpu`` profile's (12 steps at batch 8, dev every 4), not
``prompt-finetune``'s 100 steps: 100 full fine-tuning steps of smollm2-135m take about 6 CPU
minutes on one thread, too long for a default CPU run; sweeps set steps per profile anyway.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from bench.core.errors import TunebenchError
from methods.base import Method, verbalizer_model
from methods.finetune import space
from methods.prompt_finetune import build
from methods.prompting.search import (
    answer_states,
    class_scores_metrics,
    first_words,
    frozen,
    labels_array,
    ranking_key,
    vocab_log_probs,
)

MAX_ASSIGNMENTS = 200_000


def candidates(task, tokens, log_probs: torch.Tensor, train, k: int) -> list[list[tuple]]:
    """Per class: [(token id, word, mean log-prob)] best first."""
    labels = labels_array(train)
    out = []
    for c, label in enumerate(task.labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) == 0:
            raise TunebenchError(
                f"lmbff-auto-label: no training example of label {label!r}; the search needs "
                "every class in the training set"
            )
        mean = log_probs[rows].mean(0)  # (V,)
        top = first_words(tokens, mean.argsort(descending=True).tolist(), k)
        out.append([(i, w, round(mean[i].item(), 4)) for i, w in top])
    return out


def assignments(cands: list[list[tuple]], log_probs: torch.Tensor, labels, keep: int):
    """The ``keep`` best assignments on the training set: (index tuples, acc, loss)."""
    per = max(1, int(MAX_ASSIGNMENTS ** (1 / len(cands))))
    lists = (
        [c[:per] for c in cands] if math.prod(len(c) for c in cands) > MAX_ASSIGNMENTS else cands
    )
    ids = [torch.tensor([i for i, _, _ in c]) for c in lists]
    combos = torch.tensor(list(itertools.product(*[range(len(c)) for c in lists])))  # (M, C)
    words = torch.stack([ids[c][combos[:, c]] for c in range(len(lists))], 1)  # (M, C)
    distinct = torch.tensor([len(set(r)) == len(r) for r in words.tolist()])
    words = words[distinct]
    if len(words) == 0:
        raise TunebenchError(
            f"lmbff-auto-label: the classes' top {min(len(c) for c in lists)} words leave no "
            "assignment of distinct words (they share the same words); raise label_topk"
        )
    scores = log_probs[:, words].permute(1, 0, 2)  # (M, N, C)
    y = torch.as_tensor(labels)
    acc = (scores.argmax(-1) == y).float().mean(1)  # (M,)
    loss = -scores.log_softmax(-1)[:, torch.arange(len(y)), y].mean(1)  # (M,)
    order = np.lexsort((np.arange(len(acc)), loss.numpy(), -acc.numpy()))[:keep]
    return words[order], acc[order], loss[order], [len(c) for c in lists]


def search(backbone, task, split, hp) -> dict:
    if hp["label_topk"] < 1 or hp["label_assignments"] < 1:
        raise TunebenchError("lmbff-auto-label: label_topk and label_assignments must be >= 1")
    model = frozen(verbalizer_model(backbone, task, {**hp, "found": None, "verbalizer": "manual"}))
    tokens, tok = model.encoder.tokens, backbone.tokenizer
    train_lp = vocab_log_probs(model, answer_states(model, split.train))  # (N, V)
    dev_lp = vocab_log_probs(model, answer_states(model, split.dev))
    cands = candidates(task, tokens, train_lp, split.train, hp["label_topk"])
    words, acc, loss, used = assignments(
        cands, train_lp, labels_array(split.train), hp["label_assignments"]
    )
    rows = []
    for w, a, lo in zip(words.tolist(), acc.tolist(), loss.tolist()):
        dev = class_scores_metrics(task, dev_lp[:, w], split.dev)
        rows.append(
            {
                "words": [tokens.tok.decode([i]).strip() for i in w],
                "ids": w,
                "train": {"acc": round(a, 4), "loss": round(lo, 4)},
                "dev": {k: round(v, 4) for k, v in dev.items()},
            }
        )
    best = max(range(len(rows)), key=lambda r: (ranking_key(task, rows[r]["dev"]), -r))
    manual_ids = model.encoder.word_ids
    manual = {
        "words": list(model.encoder.r.prompt.words),
        "train": class_scores_metrics(task, train_lp[:, manual_ids], split.train),
        "dev": class_scores_metrics(task, dev_lp[:, manual_ids], split.dev),
    }
    return {
        "words": rows[best]["words"],
        "chosen": rows[best],
        "manual": manual,
        "candidates": {
            label: [{"word": w, "id": i, "mean_log_prob": s} for i, w, s in c]
            for label, c in zip(task.labels, cands)
        },
        "candidates_enumerated_per_class": used,
        "assignments": rows,
        "tokenizer_vocab": len(tok),
    }


METHOD = Method(
    name="lmbff-auto-label",
    family="full",
    head="lm",
    build=build,
    space=space,
    summary="label words found by LM-BFF's search (top-k per class, assignments ranked on "
    "train then dev), then prompt-based fine-tuning (Gao et al. 2021)",
    defaults={
        "lr": 1e-5,
        "steps": 12,
        "eval_every": 4,
        "batch_size": 8,
        "label_topk": 100,
        "label_assignments": 100,
    },
    search=search,
    search_keys=("label_topk", "label_assignments", "prompt", "max_length"),
)
