"""KPT (Hu et al. 2022, Knowledgeable Prompt-tuning): several label words per class from a
knowledge source, refined on the K-shot inputs, calibrated by their prior, and weighted.

Knowledge source: the backbone's own **input-embedding neighbours** of the class's manual label
word (cosine similarity over the input embedding table). KPT expands label words from
external knowledge bases (Related Words, WordNet...); none is available offline here (Debian's
``wordnet`` is not installed and there is no network but package registries), while every
backbone carries its embedding table, so this source works for every backbone, offline, with
nothing to install, and yields only words the backbone has as one token (what a verbalizer can
read). Its known weakness: embedding neighbours mix synonyms with morphological variants and
sometimes antonyms (words used in the same contexts), which is what the relevance refinement
below is for. Candidates are whole-word vocabulary tokens that decode to a clean alphabetic
word (ASCII letters, two or more, lower case when the manual word is) and that are the very
token the word gets with the manual word's leading-space convention (`Tokens.word_id`).

The search (``search``, run once per cell on the K-shot training inputs, labels unused):

1. candidates: the ``kpt_words`` nearest such words of each manual word (the manual word
   first); a word near several classes' words stays only with the class it is nearest to;
2. frequency (prior) refinement: the prior of a word is the LM's probability of it at the
   answer position averaged over the training inputs; a word whose prior is below
   ``kpt_prior_floor`` times its class's manual word's prior is dropped (a word the model
   never says there cannot carry evidence, and calibration would blow up its noise);
3. relevance refinement: across the training inputs, a word's log-probability should move
   with its own class's manual word against the others'; a word whose log-probability
   correlates more with another class's contrast ``log p(m_c) - mean_{c' != c} log p(m_c')``
   than with its own class's is dropped.

The manual word is always kept. The head scores a class by the weighted average of its words'
calibrated probabilities, ``log sum_v softmax(w_c)_v p(v|x) / prior(v)`` (computed on the
label-word logits only: the vocabulary normaliser is the same for every class), with per-word
weights ``w`` under ``head.learned`` that start uniform and train when the method trains
(a method that does not train keeps them uniform and frozen: no trainable parameters).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.core.errors import BackboneError, TunebenchError
from bench.engine.model import lm_transform

DEFAULTS = {
    "kpt_words": 16,  # candidate words per class, before refinement
    "kpt_prior_floor": 0.01,  # drop words whose prior < this x the manual word's prior
    "kpt_relevance": True,  # the relevance refinement (step 3)
    "kpt_calibrate": True,  # divide by the prior (contextual calibration)
    "kpt_lr": 1e-2,  # the per-word weights' learning rate (0: the method's)
}
SEARCH_KEYS = ("kpt_words", "kpt_prior_floor", "kpt_relevance", "prompt", "max_length")
SCAN = 20000  # nearest tokens looked at per class while collecting clean words


# --- the search ---------------------------------------------------------------------------


def clean_word(tokens, token_id: int, lowercase: bool) -> str | None:
    """The word a vocabulary token stands for, if it is a whole clean word that tokenizes back
    to this very token with the label-word convention (leading space), else None."""
    word = tokens.tok.decode([token_id]).strip()
    if len(word) < 2 or not (word.isascii() and word.isalpha()):
        return None
    if lowercase and not word.islower():
        return None
    try:
        return word if tokens.word_id(word) == token_id else None
    except BackboneError:
        return None


def neighbours(backbone, tokens, manual_ids: list[int], manual_words: list[str], n: int):
    """Per class, up to ``n`` (word, token id, cosine) nearest the manual word in the input
    embedding table, the manual word first; other classes' manual words excluded."""
    table = backbone.model.get_input_embeddings().weight.detach().float()  # (V, H)
    unit = table / table.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = unit[manual_ids] @ unit.T  # (C, V)
    out = []
    for c, (m, word) in enumerate(zip(manual_ids, manual_words)):
        found = [(word, m, 1.0)]
        for t in cos[c].argsort(descending=True)[:SCAN].tolist():
            if len(found) >= n:
                break
            if t in manual_ids:
                continue
            w = clean_word(tokens, t, word.islower())
            if w is not None:
                found.append((w, t, float(cos[c, t])))
        out.append(found)
    return out, cos


def answer_log_probs(backbone, task, split, hp):
    """log p(token | training input) at the answer position over the whole vocabulary, (N, V),
    read with the method's template (and demonstrations, if it shows them) but without its
    adapter (soft prompts and prefixes do not exist yet when the search runs); and the
    encoder that rendered them."""
    from bench.engine import data
    from bench.engine.model import TaskModel
    from bench.engine.prompts import Encoder, renderer

    r = renderer(backbone, task, hp, "prompt", demos=hp.get("demos_per_label", 0))
    model = TaskModel(backbone, Encoder(backbone.tokenizer, backbone.kind, task, r), nn.Identity())
    items = data.encode_eval(model, split.train, split.train, split.seed)
    transform = lm_transform(backbone.model)
    decoder = backbone.model.get_output_embeddings()
    model.eval()
    with torch.no_grad():
        order = data.eval_order([len(e.ids) for e in items], 16)
        parts = {}
        for idx, batch in data.batches(items, split.train, order, model.pad_id):
            h = transform(model.features(model.on_device(batch)))  # (B, H)
            logits = h @ decoder.weight.T  # (B, V)
            if decoder.bias is not None:
                logits = logits + decoder.bias
            parts.update(zip(idx, logits.float().log_softmax(-1).cpu()))
    return torch.stack([parts[i] for i in range(len(items))]), model.encoder


def _correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = float(x.norm() * y.norm())
    return float((x * y).sum()) / denominator if denominator > 0 else 0.0


def search(backbone, task, split, hp) -> dict:
    """Build and refine the word lists (see the module docstring); ``found["kpt"]``."""
    if hp["kpt_words"] < 1:
        raise TunebenchError(f"kpt_words={hp['kpt_words']}: need at least 1 word per class")
    log_probs, enc = answer_log_probs(backbone, task, split, hp)  # (N, V)
    words = list(enc.r.prompt.words)
    manual = list(enc.word_ids)
    candidates, cos = neighbours(backbone, enc.tokens, manual, words, hp["kpt_words"])
    prior = log_probs.exp().mean(0)  # (V,) mean probability at the answer position
    # contrast of each class's manual word against the others', per training input, (N, C)
    lp_manual = log_probs[:, manual]
    C = len(manual)
    contrast = torch.stack(
        [lp_manual[:, c] - (lp_manual.sum(1) - lp_manual[:, c]) / max(C - 1, 1) for c in range(C)],
        dim=1,
    )
    classes = []
    for c, found in enumerate(candidates):
        kept, dropped = [], []
        floor = hp["kpt_prior_floor"] * float(prior[manual[c]])
        for rank, (word, t, similarity) in enumerate(found):
            entry = {"word": word, "id": t, "cos": round(similarity, 4), "prior": float(prior[t])}
            relevance = [_correlation(log_probs[:, t], contrast[:, k]) for k in range(C)]
            entry["relevance"] = [round(r, 4) for r in relevance]
            nearest = int(cos[:, t].argmax())
            if rank == 0:
                kept.append(entry)  # the manual word: the class's anchor
            elif nearest != c:
                dropped.append(
                    {**entry, "reason": f"nearer class {nearest}'s word ({words[nearest]})"}
                )
            elif float(prior[t]) < floor:
                dropped.append({**entry, "reason": f"prior below {floor:.3g}"})
            elif hp["kpt_relevance"] and C > 1 and max(relevance) > relevance[c]:
                other = max(range(C), key=lambda k: relevance[k])
                dropped.append({**entry, "reason": f"more relevant to class {other}"})
            else:
                kept.append(entry)
        classes.append(
            {"label": task.labels[c], "manual": words[c], "kept": kept, "dropped": dropped}
        )
    return {"kpt": {"source": "input-embedding neighbours", "classes": classes}}


# --- the head -----------------------------------------------------------------------------


class KPTHead(nn.Module):
    """Several label words per class: (B, H) -> (B, C), class score the log of the weighted
    mean of its words' (calibrated) probabilities, the weights ``softmax(learned.weights)``
    within each class."""

    def __init__(self, model: nn.Module, classes: list[list[int]], log_prior, calibrate: bool):
        super().__init__()
        self.transform = lm_transform(model)
        decoder = model.get_output_embeddings()
        self.weight, self.bias = decoder.weight, decoder.bias  # the backbone's, shared
        flat = [t for ids in classes for t in ids]
        width = max(len(ids) for ids in classes)
        slot = torch.zeros(len(classes), width, dtype=torch.long)  # (C, W) -> index in flat
        mask = torch.zeros(len(classes), width, dtype=torch.bool)
        start = 0
        for c, ids in enumerate(classes):
            slot[c, : len(ids)] = torch.arange(start, start + len(ids))
            mask[c, : len(ids)] = True
            start += len(ids)
        device = self.weight.device
        self.register_buffer("ids", torch.tensor(flat, device=device), persistent=False)
        self.register_buffer("slot", slot.to(device), persistent=False)
        self.register_buffer("mask", mask.to(device), persistent=False)
        shift = torch.as_tensor(log_prior, dtype=torch.float32) if calibrate else None
        self.register_buffer(
            "log_prior",
            (shift if shift is not None else torch.zeros(len(flat))).to(device),
            persistent=False,
        )
        self.learned = nn.ParameterDict(
            {"weights": nn.Parameter(torch.zeros(len(flat), device=device))}  # uniform
        )
        self.calibrate = calibrate
        self.found: dict = {}  # the search's output, for describe()

    def word_weights(self) -> torch.Tensor:
        """log softmax of each class's word weights, (C, W), -inf where a class has fewer."""
        w = self.learned["weights"][self.slot]
        return torch.where(self.mask, w, -math.inf).log_softmax(-1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.transform(h)  # (B, H)
        logits = h @ self.weight[self.ids].T  # (B, N) over the kept words
        if self.bias is not None:
            logits = logits + self.bias[self.ids]
        logits = logits - self.log_prior  # calibration: p(v|x) / prior(v), in log space
        per_word = logits[:, self.slot] + self.word_weights()  # (B, C, W)
        return torch.where(self.mask, per_word, -math.inf).logsumexp(-1)

    def describe(self) -> dict:
        """The words used, and their weights now (uniform until trained)."""
        with torch.no_grad():
            weights = self.word_weights().exp()
        return {
            "name": "kpt",
            "source": self.found.get("source"),
            "calibrated": self.calibrate,
            "classes": [
                {
                    "label": c["label"],
                    "words": [e["word"] for e in c["kept"]],
                    "weights": [round(float(x), 4) for x in weights[i, : len(c["kept"])]],
                }
                for i, c in enumerate(self.found.get("classes", []))
            ],
        }


def make_head(model, encoder, task, hp) -> KPTHead:
    found = (hp.get("found") or {}).get("kpt")
    if found is None:
        raise TunebenchError(
            "verbalizer kpt needs its word lists, which its search builds from the cell's K-shot "
            "data (`tunebench run` runs it); its trainable parameters (one weight per kept word) "
            "are known only after it, so it cannot be counted without data"
        )
    classes = [[e["id"] for e in c["kept"]] for c in found["classes"]]
    if len(classes) != task.num_labels:
        raise TunebenchError(f"kpt found {len(classes)} word lists for {task.num_labels} labels")
    prior = [math.log(max(e["prior"], 1e-30)) for c in found["classes"] for e in c["kept"]]
    head = KPTHead(model, classes, prior, hp["kpt_calibrate"])
    head.found = found
    return head
