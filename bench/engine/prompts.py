"""Turning examples into token ids: plain inputs for a classifier head, templates with a
verbalizer for the LM head, and demonstrations (LM-BFF's, or GPT-3-style in context).

Every rendering yields ``Encoded(ids, position)``: ``position`` is where the head reads the
sequence — the [MASK] token (mlm) or the last prompt token (causal) for the LM head; the
first token (mlm/encoder) or the last token (causal) for a classifier head. The model never
has to search for it, so padding side and batch composition cannot move it.

A template may also hold ``{p}`` slots: one pseudo token each (P-tuning), rendered as a
placeholder id whose embedding an adapter replaces; ``Encoded.pseudo`` says where they are.
And ``{id:N}`` slots: token id N itself, rendered as that id without going through text (a
searched prompt's trigger tokens, which re-tokenizing their decoded text may not give back).

A template may hold several ``{mask}`` slots (PTR's sub-prompts, each with its own answer):
each label's word is then a tuple, one word per slot, and ``position`` is a tuple of M read
positions: the mask tokens on a masked LM; on a causal LM the last token before each answer
slot (nothing is put in an earlier slot: a later sub-prompt reads the earlier questions, not
their answers), the rendering stopping at the last one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from bench.backbones.catalog import Backbone
from bench.core.errors import BackboneError, TunebenchError
from tasks import Example, Prompt, Task
from tasks.base import SENTENCE_TRANSFORMS

SLOT = re.compile(r"(\{s1\}|\{s2\}|\{mask\}|\{p\}|\{id:\d+\})")
PSEUDO = "{p}"
TOKEN = re.compile(r"\{id:(\d+)\}")  # one raw token id


@dataclass(frozen=True)
class Encoded:
    ids: tuple[int, ...]
    position: int | tuple[int, ...]  # index in ids where the head reads (M of them: M answers)
    pseudo: tuple[int, ...] = ()  # indices in ids of the template's pseudo tokens ({p} slots)


@dataclass(frozen=True)
class Renderer:
    """How a method turns an example into ids. ``style``: "plain" (the tokenizer's own single
    or pair encoding, for a classifier head) or "prompt" (the task's template and label words,
    for the LM head). ``demos_per_label``: training examples per label shown with their label
    word — after the query on a masked LM (LM-BFF), before it on a causal LM (GPT-3 style,
    the answer must come last). ``demo_order``: "sorted" (grouped in label order, LM-BFF's
    layout) or "random" (shuffled per example by the same seeded generator that picked them).
    ``read``: where a plain rendering's head reads, "first" or "last" token."""

    style: str = "plain"
    prompt: Prompt | None = None
    demos_per_label: int = 0
    max_length: int = 128
    demo_order: str = "sorted"
    read: str = "first"


def template_text(prompt: Prompt, example: Example, word: str | None = None) -> str:
    """The template filled as plain text (for people to read; ids are built piecewise)."""
    s1 = SENTENCE_TRANSFORMS[prompt.s1](example.text_a)
    s2 = SENTENCE_TRANSFORMS[prompt.s2](example.text_b or "")
    mask = " " + word if word is not None else " [MASK]"
    out = prompt.template.replace("{s1}", s1).replace("{s2}", s2)
    if prompt.template.lstrip().startswith("{mask}"):
        mask = mask.lstrip()
    return TOKEN.sub(r"[id:\1]", out.replace("{mask}", mask).replace(PSEUDO, "[P]"))


def with_pseudo_tokens(prompt: Prompt, start: int, after_s1: int, before_mask: int) -> Prompt:
    """The prompt with P-tuning's pseudo tokens added around its words: ``start`` of them
    before the template, ``after_s1`` after the first sentence, ``before_mask`` right before
    the answer (the template's own words stay, as anchors)."""
    t = prompt.template
    t = PSEUDO * start + t.replace("{s1}", "{s1}" + PSEUDO * after_s1, 1)
    t = t.replace("{mask}", PSEUDO * before_mask + "{mask}", 1)
    return dataclasses.replace(prompt, template=t)


def template_pieces(template: str) -> list[str]:
    """Split a template into literal pieces and slots, moving each literal's trailing spaces
    onto the piece after it, so "{mask}: {s1}" tokenizes as ":" then " <sentence>"."""
    raw = [p for p in SLOT.split(template) if p != ""]
    pieces, carry = [], ""
    for p in raw:
        p = carry + p
        carry = ""
        if not SLOT.fullmatch(p.strip()) and p.rstrip(" ") != p:
            stripped = p.rstrip(" ")
            carry = p[len(stripped) :]
            p = stripped
        if p:
            pieces.append(p)
    if carry:
        pieces.append(carry)
    return pieces


class Tokens:
    """Token ids of text pieces for one tokenizer, memoised (templates repeat)."""

    def __init__(self, tokenizer, kind: str):
        self.tok, self.kind = tokenizer, kind
        self._cache: dict[str, tuple[int, ...]] = {}
        self._plain: dict[tuple, tuple[int, ...]] = {}
        probe = tokenizer("a", add_special_tokens=True)["input_ids"]
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        start = _index_of(probe, bare)
        self.prefix = tuple(probe[:start])  # e.g. [CLS] / <s> / BOS
        self.suffix = tuple(probe[start + len(bare) :])  # e.g. [SEP] / </s>
        self.sep = (tokenizer.sep_token_id,) if tokenizer.sep_token_id is not None else ()

    def __call__(self, text: str) -> tuple[int, ...]:
        ids = self._cache.get(text)
        if ids is None:
            ids = tuple(self.tok(text, add_special_tokens=False)["input_ids"])
            self._cache[text] = ids
        return ids

    def plain(self, a: str, b: str | None, max_length: int) -> tuple[int, ...]:
        """The tokenizer's own single/pair encoding (a causal LM gets the pair on two lines)."""
        if self.kind == "causal" and b is not None:
            a, b = a + "\n" + b, None
        key = (a, b, max_length)  # memoised: training re-renders the split every epoch
        ids = self._plain.get(key)
        if ids is None:
            ids = tuple(self.tok(a, b, truncation=True, max_length=max_length)["input_ids"])
            self._plain[key] = ids
        return ids

    def word_id(self, word: str, leading_space: bool = True) -> int:
        """The single token of a label word (with a leading space, as LM-BFF reads RoBERTa's)."""
        ids = self(" " + word if leading_space else word)
        ids = tuple(i for i in ids if i != self._space_id())
        if len(ids) != 1:
            pieces = self.tok.convert_ids_to_tokens(list(ids))
            raise BackboneError(
                f"label word {word!r} is {len(ids)} tokens {pieces} for this tokenizer; a "
                "verbalizer needs one token per word: choose another word or prompt variant"
            )
        return ids[0]

    @lru_cache(maxsize=1)  # noqa: B019 - one tokenizer per instance, lives as long as it
    def _space_id(self) -> int | None:
        ids = self(" ")
        return ids[0] if len(ids) == 1 and self(" a")[:1] != ids else None


def _index_of(seq, sub) -> int:
    for i in range(len(seq) - len(sub) + 1):
        if list(seq[i : i + len(sub)]) == list(sub):
            return i
    return 0


class Encoder:
    """Renders examples for one backbone and one ``Renderer``."""

    def __init__(self, tokenizer, kind: str, task: Task, renderer: Renderer):
        # Without a real tokenizer (parameter counts on the meta device) only shapes matter.
        self.tokens = Tokens(tokenizer, kind) if callable(tokenizer) else None
        self.kind, self.task, self.r = kind, task, renderer
        self.mask_id = tokenizer.mask_token_id
        # The placeholder a pseudo token shows before an adapter replaces its embedding.
        unk = getattr(tokenizer, "unk_token_id", None)
        self.pseudo_id = unk if unk is not None else (tokenizer.pad_token_id or 0)
        if renderer.style == "prompt":
            if kind == "mlm" and self.mask_id is None:
                raise BackboneError("this masked-LM tokenizer has no mask token")
            if PSEUDO in renderer.prompt.template and renderer.demos_per_label:
                raise TunebenchError("pseudo tokens ({p}) and demonstrations do not mix")
            self.answers = renderer.prompt.template.count("{mask}")
            if self.answers > 1 and renderer.demos_per_label:
                raise TunebenchError("a template with several {mask} slots takes no demonstrations")
            if kind == "causal":
                _check_answer_last(renderer.prompt)
            self.word_ids = [self._word_ids(w) for w in renderer.prompt.words]

    def _word_ids(self, word: str | tuple[str, ...]) -> int | tuple[int, ...]:
        """A label word's token id; a tuple of them for a several-answer template (0 for every
        word when only shapes matter)."""
        if isinstance(word, tuple):
            return tuple(self._word_ids(w) for w in word)
        return self.tokens.word_id(word) if self.tokens else 0

    # -- single pieces ---------------------------------------------------------------------

    def _sentences(self, ex: Example, budget: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Sentence ids, the longer truncated first until both fit ``budget`` tokens."""
        p = self.r.prompt
        t1 = SENTENCE_TRANSFORMS[p.s1 if p else "as_is"](ex.text_a)
        t2 = (
            SENTENCE_TRANSFORMS[p.s2 if p else "as_is"](ex.text_b)
            if ex.text_b is not None
            else None
        )
        return _truncate_pair(t1, t2, budget, self.tokens, self.r, p)

    def _template(
        self, ex: Example, budget: int, word: int | None
    ) -> tuple[list[int], list[int], list[int]]:
        """Template ids (no special tokens), the indices of the mask slots and of the pseudo
        tokens. ``word`` fills the mask (a demonstration); on a causal backbone a query stops
        at the (last) mask, and an earlier mask slot stays empty."""
        pieces = template_pieces(self.r.prompt.template)
        fixed = sum(len(self.tokens(q)) for q in pieces if not SLOT.fullmatch(q.strip()))
        fixed += sum(
            q.strip() in (PSEUDO, "{mask}") or bool(TOKEN.fullmatch(q.strip())) for q in pieces
        )
        a, b = self._sentences(ex, max(budget - fixed, 2))
        ids, masks_at, pseudo = [], [], []
        for q in pieces:
            slot = q.strip()
            if slot == "{s1}" or slot == "{s2}":
                ids += a if slot == "{s1}" else b
            elif slot == "{mask}":
                masks_at.append(len(ids))
                if word is None and self.kind == "causal":
                    if len(masks_at) == self.answers:
                        return ids, masks_at, pseudo
                    continue  # the answer would be the next token: the slot stays empty
                ids.append(word if word is not None else self.mask_id)
            elif slot == PSEUDO:
                pseudo.append(len(ids))
                ids.append(self.pseudo_id)
            elif TOKEN.fullmatch(slot):
                ids.append(int(TOKEN.fullmatch(slot).group(1)))
            else:
                ids += self.tokens(q)
        return ids, masks_at, pseudo

    # -- whole inputs ----------------------------------------------------------------------

    def encode(self, ex: Example, demos: list[Example] = ()) -> Encoded:
        t, r = self.tokens, self.r
        room = r.max_length - len(t.prefix) - len(t.suffix)
        if r.style == "plain":
            ids = self.tokens.plain(ex.text_a, ex.text_b, r.max_length)
            return Encoded(ids, 0 if r.read == "first" else len(ids) - 1)
        demo_room = room // (len(demos) + 1) if demos else 0
        query, masks_at, pseudo = self._template(ex, room - demo_room * len(demos), None)
        shown = [self._template(d, demo_room - 1, self.word_ids[d.label])[0] for d in demos]
        if self.kind == "causal":  # demonstrations precede the query; the answer comes last
            newline = list(t("\n"))
            before = [tok for d in shown for tok in (d + newline)]
            ids = [*t.prefix, *before, *query]
            start = len(t.prefix) + len(before)
            reads = [start + m - 1 for m in masks_at]  # the token before each answer slot
        else:
            after = [tok for d in shown for tok in (list(t.sep) + d)]
            ids = [*t.prefix, *query, *after, *t.suffix]
            start = len(t.prefix)
            reads = [start + m for m in masks_at]
        position = reads[0] if len(reads) == 1 else tuple(reads)
        return Encoded(tuple(ids), position, tuple(start + i for i in pseudo))

    def choose_demos(
        self, ex: Example, pool: list[Example], rng: np.random.Generator
    ) -> list[Example]:
        """``demos_per_label`` training examples of each label (never ``ex`` itself), sampled
        as LM-BFF does; in label order (``demo_order="sorted"``, LM-BFF's layout) or shuffled
        by ``rng`` (``"random"``), so the last demonstration's label does not repeat."""
        if not self.r.demos_per_label:
            return []
        out = []
        for label in range(self.task.num_labels):
            cands = [d for d in pool if d.label == label and d != ex]
            if cands:
                picks = rng.choice(
                    len(cands), size=min(self.r.demos_per_label, len(cands)), replace=False
                )
                out += [cands[i] for i in sorted(picks)]
        if self.r.demo_order == "random":
            out = [out[i] for i in rng.permutation(len(out))]
        return out


def _check_answer_last(prompt: Prompt) -> None:
    """A causal LM reads only what precedes the answer slot (the rendering stops there), so a
    template that puts a sentence after {mask}, or nothing before it, would be scored on the
    wrong text: refuse it rather than drop a sentence silently. With several answer slots,
    every slot must read the sentences (they come before the first), and each reads the token
    before it (so two slots need text between them)."""
    before, _, after = prompt.template.partition("{mask}")
    read = SLOT.sub(lambda m: m.group() if TOKEN.fullmatch(m.group()) else "", before)
    between = prompt.template.split("{mask}")[1:-1]
    if (
        "{s1}" in after
        or "{s2}" in after
        or not read.strip()
        or not all(b.strip() for b in between)
    ):
        raise BackboneError(
            f"template {prompt.template!r} puts text the model must read after the answer slot; "
            "a causal LM reads only what comes before it. Choose a prompt variant that ends "
            "with the answer (--set prompt=NAME; see `tunebench tasks`), or an mlm backbone"
        )


def _truncate_pair(t1, t2, budget, tokens: Tokens, r: Renderer, prompt: Prompt | None):
    """Ids of the sentence(s), with the slot's leading space where the template puts one."""
    lead1 = lead2 = ""
    if prompt is not None:
        for q in template_pieces(prompt.template):
            if q.strip() == "{s1}":
                lead1 = q[: len(q) - len(q.lstrip(" "))]
            if q.strip() == "{s2}":
                lead2 = q[: len(q) - len(q.lstrip(" "))]
    a = list(tokens(lead1 + t1))
    b = list(tokens(lead2 + t2)) if t2 is not None else []
    while len(a) + len(b) > budget and (a or b):
        if len(a) >= len(b):
            a.pop()
        else:
            b.pop()
    return tuple(a), tuple(b)


# --- the prompt a method reads, and its renderer ----------------------------------------


def task_prompt(backbone: Backbone, task: Task, hp: Mapping) -> Prompt:
    """The prompt a method reads: what its search found (``hp["found"]``: a template and/or
    label words), else the task's named variant (``auto``: the causal one on a causal LM)."""
    found = hp.get("found") or {}
    if found.get("template") or found.get("words"):
        base = task_prompt(backbone, task, {k: v for k, v in hp.items() if k != "found"})
        return replace(
            base,
            template=found.get("template") or base.template,
            words=tuple(found.get("words") or base.words),
            note="found by search",
        )
    name = hp.get("prompt", "auto")
    if name == "auto":
        name = "causal" if backbone.kind == "causal" and "causal" in task.prompts else "default"
    return task.prompt_variant(name)


def renderer(
    backbone: Backbone,
    task: Task,
    hp: Mapping,
    style: str,
    demos: int = 0,
    prompt: Prompt | None = None,
    pooling: str = "cls",
) -> Renderer:
    """``prompt``: a method's own version of the task's prompt (e.g. with pseudo tokens).
    ``pooling`` (plain style): "last" reads the last token, else the first. The demonstration
    order is ``hp["order"]``: "random", "sorted", or "auto" (sorted on a masked LM, as LM-BFF;
    random on a causal LM, where the demonstrations come right before the query)."""
    if style == "prompt" and prompt is None:
        prompt = task_prompt(backbone, task, hp)
    order = hp.get("order", "sorted")
    if order == "auto":
        order = "random" if backbone.kind == "causal" else "sorted"
    return Renderer(
        style=style,
        prompt=prompt,
        demos_per_label=demos,
        max_length=hp.get("max_length") or task.max_length,
        demo_order=order,
        read="last" if pooling == "last" else "first",
    )
