"""LM-BFF automatic template search (Gao et al. 2021, "Making Pre-trained Language Models Better
Few-shot Learners", section 5.2), then prompt-based fine-tuning with the template found.

The search (``Method.search``, on the cell's K-shot train/dev, never test):

1. generate candidate templates around the sentence(s) and the task's label words, as pairs
   (text before the answer, text after it):
   - ``t5-large`` (LM-BFF's generator): T5 fills ``<sentence> <X> <label word> <Y>`` on the
     training examples, beams summed over examples; needs the model from the hub (not
     reachable here: this path is untested on this machine, its output parser is tested);
   - a causal chat model from the backbone catalog (``smollm2-135m``, SmolLM2-135M-Instruct,
     asked through its chat template, sampled with the cell's seed) for short phrases that
     lead from the sentence into the label word ("It was", "All in all, it was"); a model
     without a chat template (``tiny-llama``) gets the request as plain text;
   - ``list``: the phrases given in the option ``phrases`` ("It was|All in all, it was");
   ``auto`` = t5-large where it can be loaded, else smollm2-135m (the record says why);
2. drop malformed candidates (``clean_phrase``), turn the rest into templates (on a causal
   backbone the answer comes last), the most often generated first, ``candidates`` of them;
3. score each, and the task's manual template (always a candidate, so the search can only
   match or beat it on dev), zero-shot on the K-shot dev set; keep the best (ties: lower dev
   loss, then the earlier candidate, the manual one first). With ``finetune_top`` = n > 0, as
   LM-BFF re-ranks, the n best and the manual one are each fine-tuned briefly (a copy of the
   backbone, ``finetune_steps`` at ``finetune_lr``) and ranked by their dev score after it.

The label words stay the manual ones. Then the method is ``prompt-finetune`` with the template
found (``hp["found"]``, read by ``task_prompt``).
"""

from __future__ import annotations

import copy
import logging
import re
from collections import Counter
from dataclasses import replace

import torch

from bench.core.errors import BackboneError, TunebenchError
from bench.engine.train import Hyper, evaluate, train
from methods.base import Method, task_prompt, verbalizer_model
from methods.finetune import space
from methods.prompt_finetune import build
from tasks import Prompt, Task

log = logging.getLogger(__name__)

T5_DEFAULT = "t5-large"
CHAT_DEFAULT = "smollm2-135m"
MAX_WORDS = 8  # a bridge phrase longer than this is not a template phrase
EXAMPLES_PER_LABEL = 4  # training examples per label shown to the generator
SAMPLES_PER_EXAMPLE = 4  # generations per example


# --- candidates: cleaning and templates -------------------------------------------------

_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|phrase\s*:|answer\s*:)\s*", re.IGNORECASE)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"


def clean_phrase(raw: str, words: tuple[str, ...]) -> str | None:
    """A generated bridge phrase made usable, or None if it is malformed: its first line, no
    bullet, number or quotes, without a label word at its end or trailing sentence
    punctuation; refused if empty, not plain printable ASCII, holding brackets or braces (they
    would be template slots), a label word (it would give the answer away) or over
    ``MAX_WORDS`` words."""
    line = next((x for x in raw.strip().splitlines() if x.strip()), "")
    text = _BULLET.sub("", line).strip().strip(_QUOTES).strip()
    lowered = [w.lower() for w in words]
    for _ in range(2):  # "It was great." -> "It was"
        text = text.rstrip(" .!?;").strip(_QUOTES).strip()
        last = text.rsplit(" ", 1)[-1].lower() if text else ""
        if last in lowered:
            text = text[: len(text) - len(last)].rstrip()
    if not text or not text.isascii() or not text.isprintable():
        return None
    if any(c in text for c in "{}[]<>") or not any(c.isalpha() for c in text):
        return None
    tokens = re.findall(r"[a-z]+", text.lower())
    if len(text.split()) > MAX_WORDS or any(w in tokens for w in lowered):
        return None
    return text


def make_template(before: str, after: str, kind: str, pair: bool) -> str:
    """A template with ``before`` leading into the answer and ``after`` following it: LM-BFF's
    layout ``{s1} before{mask}after`` (a pair: ``{s1} before{mask}after {s2}``); on a causal
    LM the answer comes last, so a pair's sentences both come first and ``after`` is dropped."""
    before = before.strip()
    if kind == "causal":
        lead = "{s1}\n{s2}\n" if pair else "{s1} "
        return f"{lead}{before}{{mask}}"
    after = after if after.strip() else ("," if pair else ".")
    return f"{{s1}} {before}{{mask}}{after}" + (" {s2}" if pair else "")


# --- generators -------------------------------------------------------------------------


def _request(task: Task, ex, word: str) -> str:
    text = f'"{ex.text_a}"' + (f' and "{ex.text_b}"' if task.is_pair else "")
    return (
        f"Text: {text}\nWrite a short phrase of 2 to 5 words that could follow this text and "
        f'come right before the word "{word}", like "It was" or "All in all, it was". '
        "Reply with the phrase only."
    )


def _examples(task: Task, split, per_label: int):
    for label in range(task.num_labels):
        yield from [e for e in split.train if e.label == label][:per_label]


def chat_phrases(generator, task: Task, prompt: Prompt, split) -> list[tuple[str, str]]:
    """Bridge phrases sampled from a causal (chat) model, most frequent first."""
    tok, model = generator.tokenizer, generator.model
    counts: Counter = Counter()
    torch.manual_seed(split.seed)
    for ex in _examples(task, split, EXAMPLES_PER_LABEL):
        word = prompt.words[ex.label]
        request = _request(task, ex, word)
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": request}], tokenize=False, add_generation_prompt=True
            )
        else:
            text = request + "\nPhrase:"
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=12,
                do_sample=True,
                temperature=0.9,
                top_p=0.95,
                num_return_sequences=SAMPLES_PER_EXAMPLE,
                pad_token_id=tok.pad_token_id,
                use_cache=True,
            )
        for seq in out[:, enc["input_ids"].shape[1] :]:
            phrase = clean_phrase(tok.decode(seq, skip_special_tokens=True), prompt.words)
            if phrase is not None:
                counts[phrase] += 1
    return [(p, "") for p, _ in counts.most_common()]


def parse_t5(decoded: str) -> tuple[str, str] | None:
    """T5's fill of ``<X> word <Y>``: "<extra_id_0> It was <extra_id_1> . <extra_id_2>" ->
    ("It was", " ."); None if the sentinels are missing."""
    text = decoded.replace("<pad>", "").replace("</s>", "")
    spans = re.split(r"<extra_id_\d+>", text)
    if len(spans) < 3:
        return None
    return spans[1].strip(), (" " + spans[2].strip()) if spans[2].strip() else ""


def t5_phrases(name: str, task: Task, prompt: Prompt, split) -> list[tuple[str, str]]:
    """LM-BFF's generation: T5 fills the spans around each label word on the training
    examples; a candidate's score is its beams' probabilities (length-normalised beam scores)
    summed over the examples (LM-BFF runs one beam search over all examples jointly)."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from bench.backbones.catalog import _hub_reachable, _in_hf_cache

    if not _in_hf_cache(name) and not _hub_reachable():
        raise BackboneError(
            f"template generator {name} needs the Hugging Face hub, which cannot be reached "
            f"from here; use generator={CHAT_DEFAULT} (or list, with phrases=...)"
        )
    tok = AutoTokenizer.from_pretrained(name)
    model = T5ForConditionalGeneration.from_pretrained(name).eval()
    scores: Counter = Counter()
    for ex in _examples(task, split, EXAMPLES_PER_LABEL):
        word = prompt.words[ex.label]
        second = f" {ex.text_b}" if task.is_pair else ""
        source = f"{ex.text_a} <extra_id_0> {word} <extra_id_1>{second}"
        enc = tok(source, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                **enc,
                num_beams=SAMPLES_PER_EXAMPLE * 2,
                num_return_sequences=SAMPLES_PER_EXAMPLE * 2,
                max_new_tokens=20,
                output_scores=True,
                return_dict_in_generate=True,
            )
        for seq, score in zip(out.sequences, out.sequences_scores):
            parsed = parse_t5(tok.decode(seq, skip_special_tokens=False))
            before = clean_phrase(parsed[0], prompt.words) if parsed else None
            after = parsed[1] if parsed and not re.search(r"[{}\[\]<>]", parsed[1]) else ""
            if before is not None:
                scores[(before, after)] += float(score.exp())
    return [c for c, _ in scores.most_common()]


def generate(backbone, task: Task, prompt: Prompt, split, hp) -> tuple[list, str, str]:
    """(candidates as (before, after), the generator used, a note on any fallback)."""
    name = hp["generator"]
    if name == "list":
        phrases = [clean_phrase(p, prompt.words) for p in hp["phrases"].split("|")]
        if not hp["phrases"].strip():
            raise TunebenchError("generator=list needs phrases=... ('It was|All in all, it was')")
        return [(p, "") for p in dict.fromkeys(phrases) if p is not None], "list", ""
    note = ""
    if name == "auto":
        try:
            return t5_phrases(T5_DEFAULT, task, prompt, split), T5_DEFAULT, ""
        except (BackboneError, OSError, ImportError, ValueError) as e:
            note = f"{T5_DEFAULT} could not be loaded ({e}); generated with {CHAT_DEFAULT}"
            log.warning("lmbff-auto-template: %s", note)
            name = CHAT_DEFAULT
    if name.startswith(("t5", "google/t5", "google-t5/")):
        return t5_phrases(name, task, prompt, split), name, note
    return chat_phrases(_causal_generator(name, backbone), task, prompt, split), name, note


def _causal_generator(name: str, backbone):
    """The cell's own backbone when it is the generator (still untouched before the build),
    else the catalog model, loaded once per process."""
    from bench.backbones.cache import pristine_backbone
    from bench.backbones.catalog import get_spec

    if name == backbone.name:
        return backbone
    if get_spec(name).kind not in ("causal", "?"):
        raise TunebenchError(
            f"template generator {name} is a {get_spec(name).kind} model; use a causal (chat) "
            f"model such as {CHAT_DEFAULT}, a T5 ({T5_DEFAULT}), or list"
        )
    return pristine_backbone(name)


# --- the search ---------------------------------------------------------------------------


def dev_score(backbone, task: Task, split, hp, prompt: Prompt) -> dict:
    """Zero-shot score of one template on the K-shot dev set."""
    model = verbalizer_model(backbone, task, {**hp, "found": None}, prompt=prompt)
    ev = evaluate(model, task, split.dev, split.train, split.seed, hp["eval_batch_size"])
    return {"dev": ev.metrics[task.metrics[0]], "dev_loss": ev.loss}


def finetuned_score(backbone, task: Task, split, hp, template: str) -> float:
    """Dev score after a short prompt-based fine-tuning with ``template``, of a copy of the
    backbone (``finetune_steps`` steps at ``finetune_lr``, the best dev state)."""
    from bench.backbones.catalog import Backbone

    b = Backbone(backbone.spec, copy.deepcopy(backbone.model), backbone.tokenizer)
    torch.manual_seed(split.seed)
    model = build(b, task, {**hp, "found": {"template": template}})
    steps = hp["finetune_steps"]
    h = Hyper.from_dict({**hp, "lr": hp["finetune_lr"], "steps": steps, "eval_every": steps})
    return train(model, task, split.train, split.dev, h, split.seed).best_dev[task.metrics[0]]


def search(backbone, task: Task, split, hp) -> dict:
    manual = task_prompt(backbone, task, {**hp, "found": None})
    generated, generator, note = generate(backbone, task, manual, split, hp)
    templates = [manual.template]
    for before, after in generated:
        t = make_template(before, after, backbone.kind, task.is_pair)
        if t not in templates and len(templates) <= hp["candidates"]:
            templates.append(t)
    scored = []
    for i, template in enumerate(templates):
        try:
            score = dev_score(backbone, task, split, hp, replace(manual, template=template))
        except (BackboneError, TunebenchError, ValueError) as e:  # a template that cannot render
            log.info("lmbff-auto-template: dropped %r: %s", template, e)
            continue
        scored.append({"template": template, **score, "manual": i == 0})
    order = sorted(range(len(scored)), key=lambda i: (-scored[i]["dev"], scored[i]["dev_loss"], i))
    if hp["finetune_top"] > 0:  # LM-BFF's re-ranking: fine-tune the best few (and the manual)
        for i in sorted({*order[: hp["finetune_top"]], 0}):
            scored[i]["dev_finetuned"] = finetuned_score(
                backbone, task, split, hp, scored[i]["template"]
            )
        tuned = [i for i in order if "dev_finetuned" in scored[i]]
        order = sorted(tuned, key=lambda i: (-scored[i]["dev_finetuned"], order.index(i)))
    best = scored[order[0]]
    return {
        "template": best["template"],
        "candidates": scored,
        "generator": generator,
        "generator_note": note,
    }


METHOD = Method(
    name="lmbff-auto-template",
    family="full",
    head="lm",
    build=build,
    space=space,
    search=search,
    search_keys=(
        "generator",
        "candidates",
        "phrases",
        "finetune_top",
        "finetune_steps",
        "finetune_lr",
        "prompt",
        "max_length",
        "verbalizer",
    ),
    summary="LM-BFF auto template: generated templates scored zero-shot on dev, the best one "
    "(or the manual) used for prompt-based fine-tuning",
    defaults={
        "lr": 1e-5,
        "generator": "auto",
        "candidates": 16,
        "phrases": "",
        "finetune_top": 0,  # LM-BFF fine-tunes the top candidates; 0: zero-shot ranking only
        "finetune_steps": 12,
        "finetune_lr": 1e-5,
    },
)
