"""The searched-prompt methods: AutoPrompt (triggers by HotFlip, label tokens from a classifier
on the answer states) and LM-BFF's automatic label words.

The searches are checked on a *planted* backbone: tiny-llama with hand-set weights in which
the answer is knowable, so that what the search should find is known in advance.

The planted model (``planted``). Embedding dimensions: ASK and PLAIN (1 for every token but
the few below), SENT and POL (sentiment words: SENT = 1, POL = +1 positive / -1 negative,
PLAIN = 0), Q (the planted query token: Q = 1, ASK = 0), LABEL (read by the label words'
output rows); the rest is small noise. Layer 0 has one working attention head: its query
reads ASK and Q, its keys PLAIN and SENT, its value POL, and its output writes the value into
LABEL; everything else in both layers writes nothing (the residual passes through). At the
read position (the last token, a causal LM):

- any token but the query token asks for PLAIN tokens, whose value is 0, so the label words'
  scores tie (loss log 2) whatever the sentence says;
- the query token attends to the sentiment word, whose value (its polarity) lands in LABEL:
  the label words' scores then follow the sentence, and the loss is near 0.

So a trigger search on this model succeeds only if it puts the query token in the slot read
last: one token of 1,000, and another ("decoy") pointing the opposite way (Q = -1) is what a
search that followed the gradient's sign the wrong way would pick.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from bench.backbones.cache import fresh_backbone
from bench.core.errors import TunebenchError
from bench.engine import compute, precision
from bench.engine.prompts import Encoder, Renderer, Tokens
from methods import get_method
from methods.autoprompt import Searcher, layout
from tasks import Example, Prompt, get_task
from tasks.splits import Split

CPU = torch.device("cpu")
TASK = get_task("SST-2")  # causal prompt "Review: {s1}\nSentiment:{mask}", negative/positive
POSITIVE = ["good", "great", "nice", "fun"]
NEGATIVE = ["bad", "awful", "boring", "terrible"]
ASK, SENT, POL, Q, LABEL, PLAIN = 0, 1, 2, 3, 4, 5
TRIGGER, DECOY = "river", "tree"


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny models: one thread


def examples(frames: list[str]) -> list[Example]:
    return [Example(f.format(w), 1) for f in frames for w in POSITIVE] + [
        Example(f.format(w), 0) for f in frames for w in NEGATIVE
    ]


TRAIN = examples(["the film was {} .", "a {} movie"])
DEV = examples(["it is {}"])


class Poisoned(dict):
    """A test set that fails the search if it is read."""

    def __getitem__(self, key):
        raise AssertionError("the search read the test set")

    def values(self):
        raise AssertionError("the search read the test set")

    def items(self):
        raise AssertionError("the search read the test set")


def split(train=TRAIN, dev=DEV) -> Split:
    return Split(TASK, 8, 13, list(train), list(dev), Poisoned(), {})


def planted(query: str | None = TRIGGER, label_words: dict[str, float] | None = None):
    """tiny-llama made into the planted model (module doc). ``query``: the token that reads the
    sentiment (None: no such token); ``label_words``: extra words with a LABEL component."""
    b = fresh_backbone("tiny-llama", CPU)
    tok = Tokens(b.tokenizer, "causal")
    model = b.model
    emb = model.get_input_embeddings().weight
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        e = torch.zeros_like(emb)
        e[:, 8:] = 0.05 * torch.randn(e.shape[0], e.shape[1] - 8, generator=g)
        e[:, ASK] = e[:, PLAIN] = 1.0
        for words, sign in ((POSITIVE, 1.0), (NEGATIVE, -1.0)):
            for w in words:
                i = tok.word_id(w)
                e[i, PLAIN], e[i, SENT], e[i, POL] = 0.0, 1.0, sign
        if query is not None:
            i = tok.word_id(query) if query.isalpha() else tok(query)[-1]
            e[i, ASK], e[i, Q] = 0.0, 1.0
        e[tok.word_id(DECOY), Q] = -1.0
        for w, value in {"negative": -1.0, "positive": 1.0, **(label_words or {})}.items():
            i = tok.word_id(w)
            e[i, 8:] = 0.0  # label rows read LABEL only: no bias between classes
            e[i, LABEL] = value
        emb.copy_(e)  # tied: the output rows too
        for layer in model.model.layers:
            for lin in (*layer.self_attn.children(), *layer.mlp.children()):
                if isinstance(lin, torch.nn.Linear):
                    lin.weight.zero_()
        attn = model.model.layers[0].self_attn
        # Head 0 (kv head 0), dims 6 and 7: the slowest rotary pairs, nearly position-free.
        attn.q_proj.weight[7, ASK] = 1.2
        attn.q_proj.weight[6, Q] = 3.0
        attn.k_proj.weight[7, PLAIN] = 1.2
        attn.k_proj.weight[6, SENT] = 0.8
        attn.v_proj.weight[0, POL] = 1.0
        attn.o_proj.weight[LABEL, 0] = 1.0
    return b


def trigger_loss(b, triggers: list[int], hp: dict, examples=TRAIN) -> float:
    lay = layout(b, TASK, hp)
    s = Searcher(b, TASK, hp, lay, lay.prompt.words)
    return s.scores(TASK, examples, triggers)["loss"]


def autoprompt_hp(**over):
    return get_method("autoprompt").hyperparameters(
        {"triggers": 2, "candidates": 5, "iterations": 4, "search_batch": 64, **over}
    )


# --- the planted model is what the module doc says ----------------------------------------


def test_planted_model_needs_the_query_token():
    b = planted()
    hp = autoprompt_hp()
    tok = Tokens(b.tokenizer, "causal")
    start = list(layout(b, TASK, hp).start)
    assert abs(trigger_loss(b, start, hp) - math.log(2)) < 0.01
    assert trigger_loss(b, [start[0], tok.word_id(TRIGGER)], hp) < 0.05
    assert trigger_loss(b, [start[0], tok.word_id(DECOY)], hp) > math.log(2) - 0.01
    # the query token helps only in the slot read last
    assert trigger_loss(b, [tok.word_id(TRIGGER), start[1]], hp) > math.log(2) - 0.01


# --- AutoPrompt ---------------------------------------------------------------------------


def test_autoprompt_finds_the_planted_trigger():
    b = planted()
    hp = autoprompt_hp()
    found = get_method("autoprompt").search(b, TASK, split(), hp)
    river = Tokens(b.tokenizer, "causal").word_id(TRIGGER)
    assert found["trigger_ids"][-1] == river, found["history"]
    assert found["chosen"] == "found"
    assert found["found"]["train"]["loss"] < 0.05
    assert found["found"]["dev"]["acc"] == 1.0 and found["start"]["dev"]["loss"] > 0.68
    assert found["template"] == f"Review: {{s1}}{{id:203}}{{id:{found['trigger_ids'][0]}}}" + (
        f"{{id:{river}}}{{mask}}"
    )
    assert found["prompt_text"].endswith(" river{mask}")
    # the found prompt is what the built model reads, ids as found
    model = get_method("autoprompt").build(b, TASK, {**hp, "found": found})
    ids = model.encoder.encode(DEV[0]).ids
    assert list(ids[-2:]) == found["trigger_ids"]


def test_autoprompt_finds_nothing_without_a_plant():
    """The control: with no query token in the vocabulary, no trigger solves the task, so the
    search above succeeded because of the plant, not because any token would do."""
    b = planted(query=None)
    found = get_method("autoprompt").search(b, TASK, split(), autoprompt_hp(iterations=6))
    assert found["found"]["train"]["loss"] > 0.6


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-roberta", "tiny-llama"])
def test_autoprompt_search_improves_and_repeats(backbone):
    """Full-batch search: every accepted swap lowers the training loss, so the found prompt's
    loss is at most the start's; the same seed gives the same search."""
    hp = autoprompt_hp(triggers=2, iterations=6, candidates=4)
    method = get_method("autoprompt")
    runs = [method.search(fresh_backbone(backbone, CPU), TASK, split(), hp) for _ in range(2)]
    a, b = runs
    assert a == b
    # a slot tried again with nothing changed goes further down the candidate ranking
    tried = set()
    for h in a["history"]:
        assert (h["slot"], h["ranks"][0], h["batch_loss"]) not in tried
        tried.add((h["slot"], h["ranks"][0], h["batch_loss"]))
    accepted = [h["best_loss"] for h in a["history"] if h["accepted"]]
    assert accepted == sorted(accepted, reverse=True)
    assert a["found"]["train"]["loss"] <= a["start"]["train"]["loss"] + 1e-6
    if accepted:
        assert a["found"]["train"]["loss"] == pytest.approx(accepted[-1], abs=1e-4)


def test_prefix_cache_gives_the_whole_input_scores_and_gradients():
    """On a causal LM the search runs only the trigger tokens over cached keys and values of
    the text before them (left-padded); losses and gradients match the plain forward pass."""
    b = fresh_backbone("tiny-llama", CPU)
    hp = autoprompt_hp(triggers=3)
    lay = layout(b, TASK, hp)
    cached = Searcher(b, TASK, hp, lay, lay.prompt.words)
    plain = Searcher(b, TASK, {**hp, "prefix_cache": False}, lay, lay.prompt.words)
    examples = TRAIN[::2] + [Example("a much longer sentence about the film that was good", 1)]
    fast, slow = cached.search_batch(examples), plain.search_batch(examples)
    assert "prefix" in fast and "prefix" not in slow
    sets = [list(lay.start), [5, 6, 7], [lay.start[0], 300, 301]]
    assert cached.losses(fast, sets) == pytest.approx(plain.losses(slow, sets), abs=1e-5)
    for triggers in sets[:2]:
        loss_fast, grad_fast = cached.loss_and_grad(fast, triggers)
        loss_slow, grad_slow = plain.loss_and_grad(slow, triggers)
        assert loss_fast == pytest.approx(loss_slow, abs=1e-5)
        assert torch.allclose(grad_fast, grad_slow, atol=1e-6, rtol=1e-4)
        assert grad_fast.abs().sum() > 0


def test_prefix_cache_runs_in_the_run_precision_and_counts_its_work():
    """The cached search path runs its trunk passes under the run's precision (as
    ``TaskModel.features`` does) and counts them: the text before the triggers once per
    batch, then N trigger tokens per row and trigger set (forward, or 4N with the gradient)."""
    b = fresh_backbone("tiny-llama", CPU)
    hp = autoprompt_hp(triggers=3)
    lay = layout(b, TASK, hp)
    with precision.using("bf16"):
        cached = Searcher(b, TASK, hp, lay, lay.prompt.words)
        plain = Searcher(b, TASK, {**hp, "prefix_cache": False}, lay, lay.prompt.words)
    fp32 = Searcher(b, TASK, hp, lay, lay.prompt.words)
    assert cached.model.precision == "bf16" and fp32.model.precision == "fp32"
    examples = TRAIN[::2]
    sets = [list(lay.start), [5, 6, 7]]
    meter = compute.Meter()
    with compute.metering(meter), compute.phase("search"):
        fast = cached.search_batch(examples)
        before = dataclasses.replace(meter.get("search"))
        losses = cached.losses(fast, sets)
        forward = meter.get("search").minus(before)
        cached.loss_and_grad(fast, sets[0])
    kept = int(fast["attention_mask"].sum()) - 3 * len(examples)
    assert before.tokens == kept  # the text before the triggers, once
    assert before.padded_tokens == fast["prefix"].mask.numel()
    assert forward.tokens == forward.padded_tokens == len(sets) * 3 * len(examples)
    n = cached.model.flop_parameters
    assert forward.flops == 2 * n * forward.padded_tokens
    grad_tokens = 3 * len(examples)
    assert meter.get("search").flops == pytest.approx(
        2 * n * (meter.get("search").padded_tokens - grad_tokens) + 4 * n * grad_tokens
    )
    exact = fp32.losses(fp32.search_batch(examples), sets)
    assert losses != exact  # computed in bf16 ...
    assert losses == pytest.approx(exact, abs=0.05)  # ... and close to fp32
    assert losses == pytest.approx(plain.losses(plain.search_batch(examples), sets), abs=0.05)


def test_autoprompt_label_search_finds_the_planted_words():
    """The query token is the last token of the causal prompt (":"), so the starting prompt
    already reads the sentiment; "city" and "tree" carry the label direction three times as
    strongly as the manual words, so a classifier on the answer states points at them."""
    b = planted(query=":", label_words={"city": -3.0, "tree": 3.0})
    hp = autoprompt_hp(label_search=True, triggers=1, iterations=1)
    found = get_method("autoprompt").search(b, TASK, split(), hp)
    assert found["label_search"]["words"] == ["city", "tree"]
    assert found["words"] == ["city", "tree"]
    assert found["label_search"]["classifier_train_acc"] == 1.0


def test_autoprompt_start_is_the_manual_prompt_when_triggers_cover_it():
    b = fresh_backbone("tiny-llama", CPU)
    tok = Tokens(b.tokenizer, "causal")
    span = list(tok("\nSentiment:"))  # 3 tokens on tiny-llama
    lay = layout(b, TASK, autoprompt_hp(triggers=len(span)))
    assert list(lay.start) == span and lay.kept == ()
    manual = Encoder(b.tokenizer, "causal", TASK, Renderer("prompt", TASK.prompts["causal"]))
    found = Prompt(lay.template(lay.start), TASK.prompts["causal"].words)
    searched = Encoder(b.tokenizer, "causal", TASK, Renderer("prompt", found))
    for ex in DEV:
        assert manual.encode(ex) == searched.encode(ex)
    fewer = layout(b, TASK, autoprompt_hp(triggers=2))  # the uncovered token stays, as an id
    assert list(fewer.kept) + list(fewer.start) == span
    more = layout(b, TASK, autoprompt_hp(triggers=5))  # filler on the left
    assert list(more.start) == list(tok(" the")) * 2 + span


def test_token_id_slots_render_ids_that_text_would_not():
    """ "ate" without a leading space is a token of its own; after a sentence, its text would
    merge with what precedes it. An {id:N} slot puts exactly N there."""
    b = fresh_backbone("tiny-llama", CPU)
    tok = Tokens(b.tokenizer, "causal")
    ate = b.tokenizer.convert_tokens_to_ids("ate")
    prompt = Prompt(f"Review: {{s1}}{{id:{ate}}}{{mask}}", ("negative", "positive"))
    enc = Encoder(b.tokenizer, "causal", TASK, Renderer("prompt", prompt))
    e = enc.encode(Example("it was gre", 1))
    assert e.ids[-1] == ate and e.position == len(e.ids) - 1
    assert list(tok("Review: it was greate"))[-1] != ate  # the text round trip would differ


def test_autoprompt_options_are_checked():
    with pytest.raises(TunebenchError, match="init='words'.*template.*filler"):
        get_method("autoprompt").hyperparameters({"init": "words"})
    with pytest.raises(TunebenchError, match="at least one trigger"):
        layout(fresh_backbone("tiny-llama", CPU), TASK, autoprompt_hp(triggers=0))


# --- LM-BFF automatic label words -----------------------------------------------------------


@pytest.mark.parametrize("topk", [1, 20])
def test_auto_label_finds_the_planted_words(topk):
    """With ":" as the query token the answer state carries the sentence's polarity; "city"
    and "tree" are the words most probable there for the negative and the positive examples
    (3x the manual words' LABEL component). With label_topk=1 each class keeps only its own
    best word, so averaging over the wrong examples would already fail."""
    b = planted(query=":", label_words={"city": -3.0, "tree": 3.0})
    method = get_method("lmbff-auto-label")
    hp = method.hyperparameters({"label_topk": topk, "label_assignments": 5})
    found = method.search(b, TASK, split(), hp)
    assert found["words"] == ["city", "tree"]
    assert found["candidates"]["0"][0]["word"] == "city"
    assert found["candidates"]["1"][0]["word"] == "tree"
    assert found["chosen"]["dev"]["acc"] == 1.0
    assert len(found["assignments"]) == min(5, max(1, topk * (topk - 1)))
    model = method.build(b, TASK, {**hp, "found": found})
    assert model.encoder.r.prompt.words == ("city", "tree")


def test_auto_label_ranks_assignments_on_train_then_picks_on_dev():
    b = planted(query=":", label_words={"city": -3.0, "tree": 3.0})
    method = get_method("lmbff-auto-label")
    found = method.search(b, TASK, split(), method.hyperparameters({"label_topk": 6}))
    train = [(r["train"]["acc"], -r["train"]["loss"]) for r in found["assignments"]]
    assert train == sorted(train, reverse=True)
    best_dev = max((r["dev"]["acc"], -r["dev"]["loss"]) for r in found["assignments"])
    assert (found["chosen"]["dev"]["acc"], -found["chosen"]["dev"]["loss"]) == best_dev
    assert all(len(set(r["words"])) == len(r["words"]) for r in found["assignments"])


def test_auto_label_says_when_the_classes_share_all_their_words():
    from methods.lmbff_auto_label import assignments

    shared = [[(7, "good", -1.0)], [(7, "good", -1.2)]]  # both classes' top 1 is "good"
    with pytest.raises(TunebenchError, match="no assignment of distinct words.*raise label_topk"):
        assignments(shared, torch.zeros(4, 10), [0, 1, 0, 1], keep=5)
    words, *_ = assignments([shared[0] + [(3, "bad", -2.0)], shared[1]], torch.zeros(4, 10),
                            [0, 1, 0, 1], keep=5)  # fmt: skip
    assert words.tolist() == [[3, 7]]


def test_auto_label_is_deterministic_and_needs_every_class():
    method = get_method("lmbff-auto-label")
    hp = method.hyperparameters({"label_topk": 5, "label_assignments": 4})
    a, b = (method.search(fresh_backbone("tiny-roberta", CPU), TASK, split(), hp) for _ in "ab")
    assert a == b
    positives = [e for e in TRAIN if e.label == 1]
    with pytest.raises(TunebenchError, match="no training example of label '0'"):
        method.search(fresh_backbone("tiny-roberta", CPU), TASK, split(train=positives), hp)


# --- through the runner -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["autoprompt", "lmbff-auto-label"])
def test_a_run_records_what_the_search_found(name, data_root):
    from bench.run.runner import Cell, run_cell

    overrides = {"iterations": 2, "candidates": 3} if name == "autoprompt" else {"steps": 2}
    rec = run_cell(Cell("tiny-llama", "SST-2", name, k=4), overrides, data_root, device=CPU)
    found, prompt = rec["found"], rec["config"]["prompt"]
    assert rec["status"] == "ok" and rec["time"]["prompt_search_s"] > 0
    assert prompt["words"] == found["words"]
    if name == "autoprompt":
        assert rec["params"]["trainable"] == 0
        assert prompt["template"] == found["template"]
        ids = [int(i) for i in re.findall(r"\{id:(\d+)\}", prompt["template"])]
        assert ids[-len(found["trigger_ids"]) :] == found["trigger_ids"]
        assert "{id:" not in found["prompt_text"] and found["prompt_text"].startswith("Review:")
    else:
        assert rec["params"]["trainable"] > 0 and rec["time"]["train_s"] > 0
        assert found["chosen"]["words"] == found["words"] and found["assignments"]


def test_show_prints_the_searched_prompt(capsys, data_root):
    from bench.cli.app import main as cli

    args = ["--task", "SST-2", "--method", "autoprompt", "--backbone", "tiny-llama"]
    sets = ["--set", "iterations=1", "--set", "candidates=2"]
    assert cli(["show", *args, *sets, "--n", "1", "--data-dir", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"template: 'Review: \{s1\}(\{id:\d+\}){4}\{mask\}'", out), out
