"""AutoPrompt (Shin et al. 2020): N trigger tokens, shared by every example, found by a
gradient-guided search on the K-shot training set; the backbone stays frozen and nothing
trains, so after the search the prompt is scored like zero-shot (0 trainable parameters).

Template: the task's prompt (its ``causal`` variant on a causal LM, where the answer comes
last) with the words right before the answer replaced by N trigger slots,
``<S1> [T] ... [T] [MASK]``: SST-2's ``Review: {s1}\\nSentiment:{mask}`` becomes
``Review: {s1}[T][T][T][T]{mask}``. ``init=template`` starts the triggers as the words they
replace (their last N tokens; filler on the left if there are fewer, and any tokens the
triggers do not cover stay), so the search starts from the manual prompt; ``init=filler``
starts from filler alone, as the paper does ([MASK] on a masked LM, " the" on a causal LM).

Each iteration (HotFlip): on a batch of ``search_batch`` training examples, the gradient of
the loss (cross-entropy of the class scores read through the label words) with respect to
one trigger's input embedding (the triggers in turn, left to right); the ``candidates``
vocabulary tokens with the largest dot product with minus that gradient (special tokens and
the label words left out); each candidate scored on the same batch; the best kept if its loss
beats the current one. A slot tried again with nothing changed since (always the case with a
whole-set batch, where the same candidates would fail again) tries the next ``candidates``
down the ranking. At the end the dev set chooses between the starting prompt and the
found one (primary metric, then loss; a tie keeps the found one).

``label_search=true`` first picks the label words as AutoPrompt does: a logistic classifier
on the answer-position hidden states of the training examples (after the LM head's transform,
with the starting prompt), then for each class the vocabulary token whose output embedding
the classifier scores highest for it (clean whole words only, one per class, distinct).

Triggers are token ids and are rendered as those ids (``{id:N}`` template slots), never
through their text, which may tokenize differently; the record keeps the ids, the tokens, a
readable prompt (decoded), and whether the decoded text gives the same ids back.

On a causal LM the text before the triggers does not depend on them: its keys and values are
computed once per batch and each trigger set runs only its N tokens (``prefix_cache``; the
same scores, a small fraction of the cost). A masked LM reads both sides, so each candidate
costs a whole forward pass there.

Budget: the defaults (4 triggers, 10 candidates, 20 iterations, the whole K-shot training set
as the batch, at most ``search_batch`` = 32 examples) fit a CPU run on smollm2-135m in a few
minutes on one thread; raise ``iterations`` and ``candidates`` on a GPU (the paper ran
hundreds of iterations with 10-100 candidates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache

from bench.core.errors import TunebenchError
from bench.engine import compute, precision
from bench.engine.data import collate
from bench.engine.model import TaskModel
from bench.engine.prompts import SLOT, TOKEN, Tokens, template_pieces
from methods.base import Method, set_trainable, task_prompt, verbalizer_model
from methods.prompting.adapters import cache_kwarg
from methods.prompting.search import (
    class_scores_metrics,
    first_words,
    frozen,
    ranking_key,
)
from tasks import Prompt


@dataclass(frozen=True)
class Layout:
    """Where the triggers go in the task's prompt: ``head`` + kept ids + triggers + ``tail``."""

    prompt: Prompt
    head: str  # the template up to the replaced words
    tail: str  # {mask} and what follows it
    kept: tuple[int, ...]  # tokens of the replaced words that the triggers do not cover
    start: tuple[int, ...]  # the triggers' starting ids

    def template(self, triggers, *, placeholders: bool = False) -> str:
        ids = "".join(f"{{id:{i}}}" for i in self.kept)
        slots = "".join("{p}" if placeholders else f"{{id:{int(i)}}}" for i in triggers)
        return self.head + ids + slots + self.tail


def layout(backbone, task, hp) -> Layout:
    prompt = task_prompt(backbone, task, {k: v for k, v in hp.items() if k != "found"})
    tokens = Tokens(backbone.tokenizer, backbone.kind)
    pieces = template_pieces(prompt.template)
    m = next(i for i, q in enumerate(pieces) if q.strip() == "{mask}")
    literal = m > 0 and not SLOT.fullmatch(pieces[m - 1].strip())
    span = list(tokens(pieces[m - 1])) if literal else []
    head = "".join(pieces[: m - 1] if literal else pieces[:m])
    n = hp["triggers"]
    if n < 1:
        raise TunebenchError(f"autoprompt needs at least one trigger (got triggers={n})")
    tok = backbone.tokenizer
    fill = tok.mask_token_id if backbone.kind == "mlm" else tokens(" the")[-1]
    if hp["init"] == "filler":
        kept, start = (), (fill,) * n
    elif len(span) >= n:
        kept, start = tuple(span[:-n]), tuple(span[-n:])
    else:
        kept, start = (), (fill,) * (n - len(span)) + tuple(span)
    return Layout(prompt, head, "".join(pieces[m:]), kept, start)


class _Tap(nn.Module):
    """An adapter that changes nothing but keeps the input embeddings, to read their
    gradient."""

    def forward(self, embeds, mask, batch):
        self.embeds = embeds.detach().requires_grad_(True)
        return self.embeds, mask, {}, 0


def _place(batch: dict, triggers) -> dict:
    """The batch with the trigger ids at the trigger slots (``batch["pseudo"]``, (B, N))."""
    slots = batch["pseudo"]
    ids = torch.as_tensor(list(triggers), device=slots.device).expand_as(slots)
    return {**batch, "input_ids": batch["input_ids"].scatter(1, slots, ids)}


class _Prefix:
    """On a causal LM the triggers end the input (the answer is read at the last one), so the
    text before them does not depend on them: its keys and values are computed once per batch,
    left-padded so that every row's triggers come at the same columns, and each trigger set
    then runs only its N tokens (a few percent of the cost of the whole input)."""

    def __init__(self, model: TaskModel, batch: dict, cache_kw: str):
        slots, lengths = batch["pseudo"], batch["attention_mask"].sum(1)  # (B, N), (B,)
        n, device = slots.shape[1], slots.device
        if not bool((slots == (lengths - n)[:, None] + torch.arange(n, device=device)).all()):
            raise ValueError("the triggers are not the last tokens of every input")
        keep = lengths - n
        self.width = int(keep.max())
        ids = torch.full((len(lengths), self.width), model.pad_id, device=device)
        self.mask = torch.zeros_like(ids)
        for r, k in enumerate(keep.tolist()):
            ids[r, self.width - k :] = batch["input_ids"][r, :k]
            self.mask[r, self.width - k :] = 1
        self.next = keep  # the first trigger's position id
        self.cache_kw, cache = cache_kw, DynamicCache()
        with torch.no_grad(), precision.autocast(model.precision, device):
            model.body(
                input_ids=ids,
                attention_mask=self.mask,
                position_ids=(self.mask.cumsum(1) - 1).clamp(min=0),
                use_cache=True,
                **{cache_kw: cache},
            )
        compute.account(model, self.mask, 0, backward=False)
        self.kv = [(layer.keys, layer.values) for layer in cache.layers]  # per layer (B, h, P, d)

    def scores(self, model: TaskModel, embeds: torch.Tensor) -> torch.Tensor:
        """Class scores (B, C) with these trigger embeddings, (B, N, H)."""
        b, n = embeds.shape[:2]
        with precision.autocast(model.precision, embeds.device):
            out = model.body(
                inputs_embeds=embeds,
                attention_mask=torch.cat([self.mask, self.mask.new_ones(b, n)], 1),
                position_ids=self.next[:, None] + torch.arange(n, device=embeds.device),
                use_cache=True,
                **{self.cache_kw: DynamicCache(ddp_cache_data=self.kv)},  # a new one: it grows
            )
        # only the N trigger positions run through the layers: they are what is counted
        backward = torch.is_grad_enabled() and embeds.requires_grad
        compute.account(model, self.mask.new_ones(b, n), 0, backward)
        return model.head(out.last_hidden_state[:, -1].float())  # fp32, as TaskModel.features


class Searcher:
    """The frozen model with trigger slots, and the two things the search asks of it."""

    def __init__(self, backbone, task, hp, lay: Layout, words):
        prompt = replace(
            lay.prompt, template=lay.template(lay.start, placeholders=True), words=tuple(words)
        )
        self.tap = _Tap()
        manual = {**hp, "verbalizer": "manual"}  # the search reads the label words' LM rows
        self.model = frozen(
            verbalizer_model(backbone, task, manual, adapter=self.tap, prompt=prompt)
        )
        self.embeddings = backbone.model.get_input_embeddings().weight  # (V, H)
        kw = cache_kwarg(self.model.body)
        self.cache_kw = kw if backbone.kind == "causal" and hp["prefix_cache"] else None

    def batch(self, examples) -> dict:
        """The examples' batch, on the model's device."""
        return self.model.on_device(
            collate([self.model.encoder.encode(e) for e in examples], examples, self.model.pad_id)
        )

    def search_batch(self, examples) -> dict:
        """A batch to search on: with the prefix's keys and values on a causal LM."""
        b = self.batch(examples)
        if self.cache_kw is not None:
            b["prefix"] = _Prefix(self.model, b, self.cache_kw)
        return b

    def _embeds(self, triggers, rows: int) -> torch.Tensor:
        return self.embeddings.detach()[list(triggers)].expand(rows, -1, -1)  # (B, N, H)

    def loss_and_grad(self, batch: dict, triggers) -> tuple[float, torch.Tensor]:
        """Mean loss and its gradient at each trigger's input embedding, summed over the
        batch, (N, H)."""
        with torch.enable_grad():
            if "prefix" in batch:
                leaf = self.embeddings.detach()[list(triggers)].clone().requires_grad_(True)
                rows = batch["input_ids"].shape[0]
                loss = self.model.loss(
                    batch["prefix"].scores(self.model, leaf.expand(rows, -1, -1)), batch
                )
                loss.backward()
                return loss.item(), leaf.grad * 1.0  # expand's gradient is the sum over rows
            b = _place(batch, triggers)
            loss = self.model.loss(self.model(b), b)
            loss.backward()
        grad = self.tap.embeds.grad  # (B, T, H)
        slots = b["pseudo"][..., None].expand(-1, -1, grad.shape[-1])
        return loss.item(), grad.gather(1, slots).sum(0)  # (N, H)

    @torch.no_grad()
    def losses(self, batch: dict, trigger_sets, rows: int = 128) -> list[float]:
        """Mean loss of each trigger set on ``batch``; candidates share forward passes."""
        n = batch["input_ids"].shape[0]
        if "prefix" in batch:
            return [
                self.model.loss(
                    batch["prefix"].scores(self.model, self._embeds(t, n)), batch
                ).item()
                for t in trigger_sets
            ]
        per = max(1, rows // n)
        out = []
        for s in range(0, len(trigger_sets), per):
            group = trigger_sets[s : s + per]
            big = {k: torch.cat([v] * len(group)) for k, v in batch.items() if torch.is_tensor(v)}
            ids = torch.cat([torch.as_tensor(list(t)).expand(n, -1) for t in group])
            ids = ids.to(big["input_ids"].device)
            big["input_ids"] = big["input_ids"].scatter(1, big["pseudo"], ids)
            logits = self.model(big)
            for g in range(len(group)):
                part = slice(g * n, (g + 1) * n)
                out.append(
                    self.model.loss(logits[part], {k: v[part] for k, v in big.items()}).item()
                )
        return out

    @torch.no_grad()
    def scores(self, task, examples, triggers) -> dict:
        """The task's metrics and loss with these triggers (whole set, eval batches of 32)."""
        logits = []
        for s in range(0, len(examples), 32):
            b = _place(self.batch(examples[s : s + 32]), triggers)
            logits.append(self.model(b))
        return class_scores_metrics(task, torch.cat(logits), examples)

    def candidates(self, grad: torch.Tensor, k: int, banned: torch.Tensor, skip: int = 0):
        """HotFlip: the tokens ranked ``skip`` to ``skip + k`` by the dot product of their
        embeddings with minus the gradient (the first-order best swaps)."""
        score = (self.embeddings.detach().float() @ (-grad.float())).cpu()  # (V,)
        score[banned] = -torch.inf
        return score.topk(skip + k).indices[skip:].tolist()


def search_labels(backbone, task, split, hp, lay: Layout) -> tuple[list[str], dict]:
    """AutoPrompt's label-token search: see the module doc."""
    base = Searcher(backbone, task, hp, lay, lay.prompt.words)
    model, tokens = base.model, base.model.encoder.tokens
    with torch.no_grad():
        b = _place(base.batch(split.train), lay.start)
        states = model.head.transform(model.features(b)).float().cpu()  # (N, H), on the CPU
    # Centred and scaled by one number (per-dimension scaling would blow up dimensions that
    # barely vary), so the classifier on raw states is w / scale.
    scale = (states - states.mean(0)).pow(2).mean().sqrt() + 1e-6
    x = (states - states.mean(0)) / scale
    y = torch.tensor([e.label for e in split.train])
    w = torch.zeros(task.num_labels, x.shape[1], requires_grad=True)
    bias = torch.zeros(task.num_labels, requires_grad=True)
    opt = torch.optim.Adam([w, bias], lr=hp["label_lr"])
    with torch.enable_grad():
        for _ in range(hp["label_steps"]):
            loss = nn.functional.cross_entropy(x @ w.T + bias, y) + 1e-3 * w.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    scores = model.head.weight.detach().float().cpu() @ (w.detach() / scale).T  # (V, C)
    chosen, table = [], {}
    for c, label in enumerate(task.labels):
        ranked = scores[:, c].argsort(descending=True).tolist()
        top = first_words(tokens, ranked, hp["label_candidates"], exclude=chosen)
        if not top:
            raise TunebenchError(f"autoprompt label search: no whole-word token for label {label}")
        chosen.append(top[0][0])
        table[label] = [
            {"word": w_, "id": i, "score": round(scores[i, c].item(), 4)} for i, w_ in top
        ]
    words = [tokens.tok.decode([i]).strip() for i in chosen]
    acc = ((x @ w.detach().T + bias.detach()).argmax(-1) == y).float().mean().item()
    return words, {"words": words, "candidates": table, "classifier_train_acc": acc}


def readable(tokenizer, template: str) -> str:
    """The template with each run of ``{id:N}`` slots decoded together (for people; the ids
    are what counts)."""

    def decode(m):
        return tokenizer.decode([int(i) for i in TOKEN.findall(m.group())])

    return re.sub(r"(?:\{id:\d+\})+", decode, template)


def search(backbone, task, split, hp) -> dict:
    lay = layout(backbone, task, hp)
    tok = backbone.tokenizer
    words, labels = list(lay.prompt.words), None
    if hp["label_search"]:
        words, labels = search_labels(backbone, task, split, hp, lay)
    s = Searcher(backbone, task, hp, lay, words)
    banned = torch.zeros(s.embeddings.shape[0], dtype=torch.bool)
    specials = [i for i in getattr(tok, "all_special_ids", []) if i < len(banned)]
    banned[specials + list(s.model.encoder.word_ids)] = True
    rng = np.random.default_rng(split.seed)
    triggers, history, tried = list(lay.start), [], {}
    size = min(hp["search_batch"], len(split.train))
    full = size == len(split.train)
    whole = s.search_batch(split.train) if full else None
    for it in range(hp["iterations"]):
        picks = sorted(rng.choice(len(split.train), size, replace=False).tolist())
        batch = whole if full else s.search_batch([split.train[i] for i in picks])
        j = it % len(triggers)
        loss, grad = s.loss_and_grad(batch, triggers)
        # Back at a slot with nothing changed since it was last tried, the next candidates
        # down the ranking (on a whole-set batch the same ones would only fail again).
        state = (j, tuple(triggers), None if full else tuple(picks))
        skip = tried.get(state, 0)
        tried[state] = skip + hp["candidates"]
        banned_now = banned.clone()
        banned_now[triggers[j]] = True
        cands = s.candidates(grad[j], hp["candidates"], banned_now, skip)
        sets = [triggers[:j] + [c] + triggers[j + 1 :] for c in cands]
        losses = s.losses(batch, sets)
        best = int(np.argmin(losses))
        accepted = losses[best] < loss
        history.append(
            {
                "iteration": it + 1,
                "slot": j,
                "ranks": [skip + 1, skip + len(cands)],
                "batch_loss": round(loss, 6),
                "best_candidate": tok.convert_ids_to_tokens(cands[best]),
                "best_loss": round(losses[best], 6),
                "accepted": bool(accepted),
            }
        )
        if accepted:
            triggers = sets[best]
    manual = s if labels is None else Searcher(backbone, task, hp, lay, lay.prompt.words)
    start = _summary(manual, task, split, lay, lay.start, tok)
    found = _summary(s, task, split, lay, triggers, tok)
    chosen = found if ranking_key(task, found["dev"]) >= ranking_key(task, start["dev"]) else start
    return {
        "template": chosen["template"],
        "words": chosen["words"],
        "prompt_text": chosen["prompt_text"],
        "trigger_ids": chosen["trigger_ids"],
        "chosen": "found" if chosen is found else "start",
        "start": start,
        "found": found,
        "label_search": labels,
        "history": history,
        "budget": {
            k: hp[k] for k in ("triggers", "candidates", "iterations", "search_batch", "init")
        },
    }


def _summary(s: Searcher, task, split, lay: Layout, triggers, tok) -> dict:
    """A prompt's ids and text (with the searcher's words), and its scores on train and dev."""
    template = lay.template(triggers)
    text = tok.decode(list(triggers))
    return {
        "template": template,
        "words": list(s.model.encoder.r.prompt.words),
        "prompt_text": readable(tok, template),
        "trigger_ids": [int(i) for i in triggers],
        "trigger_tokens": tok.convert_ids_to_tokens(list(triggers)),
        "trigger_round_trip": tok(text, add_special_tokens=False)["input_ids"] == list(triggers),
        "train": s.scores(task, split.train, triggers),
        "dev": s.scores(task, split.dev, triggers),
    }


def build(backbone, task, hp):
    """The found prompt (``hp["found"]``) read like zero-shot; without a search (parameter
    counts), the task's prompt."""
    model = verbalizer_model(backbone, task, hp)
    set_trainable(model, lambda name, p: False, verbalizer=False)
    return model


METHOD = Method(
    name="autoprompt",
    family="prompt",
    head="lm",
    build=build,
    trains=False,
    summary="N trigger tokens found by gradient-guided search (HotFlip), backbone frozen "
    "(Shin et al. 2020)",
    defaults={
        "triggers": 4,
        "candidates": 10,
        "iterations": 20,
        "search_batch": 32,
        "init": "template",
        "label_search": False,
        "label_candidates": 10,
        "label_steps": 200,
        "label_lr": 0.01,
        "prefix_cache": True,
    },
    choices={
        "init": ("template", "filler"),
        "label_search": (False, True),
        "prefix_cache": (False, True),
    },
    search=search,
    search_keys=(
        "triggers",
        "candidates",
        "iterations",
        "search_batch",
        "init",
        "label_search",
        "label_candidates",
        "label_steps",
        "label_lr",
        "prefix_cache",
        "prompt",
        "max_length",
    ),
)
