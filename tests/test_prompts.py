"""Rendering and the two prediction heads, on the tiny backbones.

Templates are checked against the tokenizer's own encoding of the filled-in text (the
renderer builds ids piecewise, so the two must agree); the LM head read at the answer position
is checked against the backbone's own full-vocabulary forward; padding must not change a
prediction; `tunebench params` reproduces published counts; frozen features are computed once.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from bench.backbones.cache import fresh_backbone, pristine_backbone
from bench.cli.app import main as cli
from bench.core.errors import BackboneError
from bench.engine import data
from bench.engine.model import TaskModel
from bench.engine.prompts import Encoder, Renderer, template_text
from bench.run.runner import run_trial
from methods import get_method
from methods.base import renderer
from tasks import TASKS, Example, Prompt, get_task
from tasks.splits import Split

TINY = ["tiny-bert", "tiny-roberta", "tiny-llama"]
MLM = ["tiny-bert", "tiny-roberta"]
CPU = torch.device("cpu")
SEED = 13

GOOD = "good great fine nice fun wonderful brilliant beautiful".split()
BAD = "bad awful boring dull poor stupid worst terrible".split()
POOL = [Example(f"the film was {w} .", 1) for w in GOOD] + [
    Example(f"a movie so {w} !", 0) for w in BAD
]
MIXED = [  # lengths differ, so batches pad
    Example("fine .", 1),
    Example("the film was long and slow and the plot was dull , really dull .", 0),
    Example("a great movie with a great cast !", 1),
]


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny models: one thread


def encoder(backbone: str, task: str, *, prompt="auto", demos=0, max_length=0, style="prompt"):
    b = pristine_backbone(backbone)
    hp = {"prompt": prompt, "max_length": max_length}
    t = get_task(task)
    return Encoder(b.tokenizer, b.kind, t, renderer(b, t, hp, style, demos))


def _hp(method: str, **kw) -> dict:
    return get_method(method).hyperparameters(kw)


def tokenized(backbone: str, text: str) -> list[int]:
    """The tokenizer's own encoding of a filled-in template, the mask as its special token
    (the label word it stands for carries its leading space, so the mask takes none)."""
    tok = pristine_backbone(backbone).tokenizer
    text = text.replace(" [MASK]", tok.mask_token or "").replace("[MASK]", tok.mask_token or "")
    return tok(text)["input_ids"]


def example_for(task) -> Example:
    if task.is_pair:
        return Example("The man ate the food.", 0, "He was hungry.")
    return Example("a great film with a fine cast.", 1)


# --- templates ------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", MLM)
@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_template_renders_as_its_text_on_a_masked_lm(task, backbone):
    enc = encoder(backbone, task)
    ex = example_for(get_task(task))
    e = enc.encode(ex)
    assert list(e.ids) == tokenized(backbone, template_text(enc.r.prompt, ex))
    mask = pristine_backbone(backbone).tokenizer.mask_token_id
    assert e.ids[e.position] == mask and e.ids.count(mask) == 1


def test_sst2_is_lm_bff_template_with_the_mask_at_position():
    enc = encoder("tiny-roberta", "SST-2")
    ex = Example("a great film.", 1)
    assert template_text(enc.r.prompt, ex) == "a great film. It was [MASK]."
    e = enc.encode(ex)
    tok = pristine_backbone("tiny-roberta").tokenizer
    pieces = tok.convert_ids_to_tokens(list(e.ids))
    assert pieces[e.position - 2 : e.position + 3] == ["ĠIt", "Ġwas", "<mask>", ".", "</s>"]
    assert [tok.convert_ids_to_tokens(i) for i in enc.word_ids] == ["Ġterrible", "Ġgreat"]


@pytest.mark.parametrize("backbone", MLM)
def test_rte_drops_the_premise_last_char_and_lower_cases_the_hypothesis(backbone):
    enc = encoder(backbone, "RTE")
    ex = Example("The man ate the food.", 0, "He was hungry.")
    assert template_text(enc.r.prompt, ex) == "The man ate the food? [MASK], he was hungry."
    e = enc.encode(ex)
    assert list(e.ids) == tokenized(backbone, "The man ate the food?[MASK], he was hungry.")


@pytest.mark.parametrize("backbone", MLM)
def test_trec_puts_the_mask_first(backbone):
    enc = encoder(backbone, "trec")
    e = enc.encode(Example("What is the name of the city?", 5))
    prefix = enc.tokens.prefix
    assert e.position == len(prefix)
    assert e.ids[e.position] == enc.mask_id
    assert e.ids[e.position + 1 : e.position + 2] == enc.tokens(":")


def test_causal_rendering_ends_right_before_the_label_word():
    enc = encoder("tiny-llama", "SST-2")  # auto: the task's "causal" variant
    assert enc.r.prompt.template == "Review: {s1}\nSentiment:{mask}"
    e = enc.encode(Example("a great film.", 1))
    assert list(e.ids) == tokenized("tiny-llama", "Review: a great film.\nSentiment:")
    assert e.position == len(e.ids) - 1
    for word, word_id in zip(enc.r.prompt.words, enc.word_ids):
        answered = tokenized("tiny-llama", f"Review: a great film.\nSentiment: {word}")
        assert answered == [*e.ids, word_id]


@pytest.mark.parametrize(
    "task, prompt", [("RTE", "default"), ("MRPC", "default"), ("trec", "default")]
)  # fmt: skip
def test_causal_lm_refuses_a_template_with_text_after_the_answer(task, prompt):
    """The rendering stops at the answer slot: RTE's hypothesis (after it) would never be read."""
    with pytest.raises(BackboneError, match="after the answer slot"):
        encoder("tiny-llama", task, prompt=prompt)


@pytest.mark.parametrize("backbone", TINY)
def test_label_words_are_single_tokens_for_every_task_and_variant(backbone):
    tok = pristine_backbone(backbone).tokenizer
    checked = 0
    for task in TASKS.values():
        for variant in ["default", *task.prompts]:
            try:
                enc = encoder(backbone, task.name, prompt=variant)
            except BackboneError as e:
                assert backbone == "tiny-llama" and "after the answer slot" in str(e)
                continue
            words = [tok.convert_ids_to_tokens(i).lstrip("Ġ") for i in enc.word_ids]
            expected = [w.lower() if backbone == "tiny-bert" else w for w in enc.r.prompt.words]
            assert words == expected, (task.name, variant)
            checked += 1
    assert checked >= len(TASKS) // 2  # not vacuous


def test_a_label_word_of_several_tokens_is_a_clear_error():
    b = pristine_backbone("tiny-roberta")
    bad = Prompt("{s1} It was{mask}.", ("terrible", "extraordinarily"))
    with pytest.raises(BackboneError, match="'extraordinarily' is .* tokens"):
        Encoder(b.tokenizer, b.kind, get_task("SST-2"), Renderer("prompt", bad))


# --- truncation -----------------------------------------------------------------------

LONG = " ".join(["the movie was long and slow"] * 40) + "."


@pytest.mark.parametrize("backbone", TINY)
def test_truncation_keeps_the_template_and_the_mask(backbone):
    enc = encoder(backbone, "SST-2", max_length=24)
    e = enc.encode(Example(LONG, 0))
    assert len(e.ids) <= 24
    t = enc.tokens
    if backbone == "tiny-llama":  # "Review: ... \nSentiment:" with the sentence cut
        assert e.ids[: len(t("Review:"))] == t("Review:")
        assert e.ids[-len(t("\nSentiment:")) :] == t("\nSentiment:")
        assert e.position == len(e.ids) - 1
    else:  # "... It was [MASK]." with the sentence cut
        tail = (*t(" It was"), enc.mask_id, *t("."), *t.suffix)
        assert e.ids[-len(tail) :] == tail
        assert e.ids[e.position] == enc.mask_id


@pytest.mark.parametrize("backbone", MLM)
def test_truncation_of_a_pair_cuts_the_longer_sentence_and_keeps_the_template(backbone):
    enc = encoder(backbone, "RTE", max_length=32)
    e = enc.encode(Example(LONG, 0, "He was hungry."))
    assert len(e.ids) <= 32
    assert e.ids[e.position] == enc.mask_id
    hypothesis = enc.tokens(" he was hungry.")
    assert e.ids[-len(hypothesis) - len(enc.tokens.suffix) : -len(enc.tokens.suffix)] == hypothesis
    assert e.ids[e.position - 1 : e.position] == enc.tokens("?")


@pytest.mark.parametrize("backbone", TINY)
def test_truncation_with_demonstrations_stays_within_max_length(backbone):
    enc = encoder(backbone, "SST-2", demos=1, max_length=40)
    long_pool = [Example(LONG, 0), Example(LONG + " great", 1)]
    e = enc.encode(Example(LONG, 1), long_pool)
    assert len(e.ids) <= 40
    if backbone != "tiny-llama":
        assert e.ids[e.position] == enc.mask_id and e.ids.count(enc.mask_id) == 1
    else:
        assert e.position == len(e.ids) - 1


def test_show_prints_a_rendered_example(capsys, data_root):
    args = ["--task", "SST-2", "--method", "prompt-finetune", "--backbone", "tiny-roberta"]
    assert cli(["show", *args, "--n", "1", "--data-dir", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "template: '{s1} It was{mask}.'" in out
    assert "'terrible' -> 'Ġterrible'" in out and "'great' -> 'Ġgreat'" in out
    assert re.search(r"text: .* It was \[MASK\]\.", out)
    assert re.search(r"ĠIt Ġwas >><mask><< \. </s>", out)


# --- demonstrations -------------------------------------------------------------------


def test_demonstrations_one_per_label_in_label_order_never_the_example():
    enc = encoder("tiny-roberta", "SST-2", demos=1)
    for i, ex in enumerate(POOL):
        demos = enc.choose_demos(ex, POOL, data.eval_rng(SEED, i))
        assert [d.label for d in demos] == [0, 1]
        assert ex not in demos and all(d in POOL for d in demos)


def test_demonstrations_follow_the_query_on_a_masked_lm():
    enc = encoder("tiny-roberta", "SST-2", demos=1)
    ex, demos = Example("a fine film.", 1), [Example("so dull.", 0), Example("so fun.", 1)]
    e = enc.encode(ex, demos)
    expected = "a fine film. It was[MASK].</s>so dull. It was terrible.</s>so fun. It was great."
    assert list(e.ids) == tokenized("tiny-roberta", expected)
    assert e.ids[e.position] == enc.mask_id and e.position < e.ids.index(enc.word_ids[0])


def test_demonstrations_precede_the_query_on_a_causal_lm():
    enc = encoder("tiny-llama", "SST-2", demos=1)
    ex, demos = Example("a fine film.", 1), [Example("so dull.", 0), Example("so fun.", 1)]
    e = enc.encode(ex, demos)
    expected = (
        "Review: so dull.\nSentiment: negative\nReview: so fun.\nSentiment: positive\n"
        "Review: a fine film.\nSentiment:"
    )
    assert list(e.ids) == tokenized("tiny-llama", expected)
    assert e.position == len(e.ids) - 1


@pytest.mark.parametrize("backbone", TINY)
def test_demonstrations_at_inference_are_fixed_per_example_by_the_seed(backbone):
    b = fresh_backbone(backbone, CPU)
    model = get_method("in-context").build(b, get_task("SST-2"), _hp("in-context"))
    first = data.encode_eval(model, POOL, POOL, SEED)
    assert data.encode_eval(model, POOL, POOL, SEED) == first
    assert data.encode_eval(model, POOL, POOL, SEED + 1) != first


# --- the two heads --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["finetune", "prompt-finetune"])  # classifier, verbalizer
@pytest.mark.parametrize("backbone", TINY)
def test_padding_does_not_change_a_prediction(backbone, method):
    b = fresh_backbone(backbone, CPU)
    torch.manual_seed(SEED)
    model = get_method(method).build(b, get_task("SST-2"), _hp(method)).eval()
    items = data.encode_eval(model, MIXED, POOL, SEED)
    with torch.no_grad():
        together = model(data.collate(items, MIXED, model.pad_id))
        alone = torch.cat(
            [model(data.collate([it], [ex], model.pad_id)) for it, ex in zip(items, MIXED)]
        )
    assert len({len(it.ids) for it in items}) == len(items)  # every row but one is padded
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backbone", TINY)
def test_verbalizer_head_equals_full_lm_logits_at_the_answer_position(backbone):
    b = fresh_backbone(backbone, CPU)
    task = get_task("SST-2")
    model = get_method("zero-shot").build(b, task, _hp("zero-shot")).eval()
    batch = data.collate(data.encode_eval(model, MIXED, POOL, SEED), MIXED, model.pad_id)
    with torch.no_grad():
        scores = model(batch)  # (B, C)
        logits = b.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    rows = torch.arange(len(MIXED))
    word_ids = torch.tensor(model.encoder.word_ids)
    full = logits.logits[rows, batch["position"]][:, word_ids]  # (B, C) of (B, T, V)
    assert scores.shape == (len(MIXED), task.num_labels)
    torch.testing.assert_close(scores, full, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores[0], scores[1])  # the rows do differ


# --- `tunebench params` and the feature cache -----------------------------------------


def _table(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()))) for line in lines[1:]]


def test_params_reproduces_published_counts(capsys):
    code = cli(
        ["params", "--backbone", "roberta-base", "--backbone", "roberta-large"]
        + ["--method", "lora", "--method", "bitfit"]
    )
    assert code == 0
    rows = {(r["backbone"], r["method"]): r for r in _table(capsys.readouterr().out)}
    # LoRA r=8 on query and value: 2 projections x 2 matrices x r x hidden x layers.
    assert rows["roberta-base", "lora"]["method params"] == f"{2 * 2 * 8 * 768 * 12:,}"
    assert rows["roberta-base", "lora"]["method params"] == "294,912"  # Hu et al. 2021
    assert rows["roberta-large", "lora"]["method params"] == "786,432"
    # BitFit: embeddings LayerNorm + per layer q, k, v, o, FFN in (3072) and out, 2 LayerNorms:
    # 768 + 12 * (7 * 768 + 3072) = 102,144, "0.1M" (Ben Zaken et al. 2022).
    assert rows["roberta-base", "bitfit"]["method params"] == "102,144"


def _split(train, dev) -> Split:
    return Split(get_task("SST-2"), 8, SEED, train, dev, {}, {})


def test_frozen_features_are_computed_once_and_reused_across_trials(monkeypatch):
    calls = []
    original = TaskModel.features

    def counting(self, batch):  # every run of the trunk
        calls.append(len(batch["input_ids"]))
        return original(self, batch)

    monkeypatch.setattr(TaskModel, "features", counting)
    method = get_method("head-only")
    hp = method.hyperparameters({"steps": 20, "eval_every": 10, "lr": 1e-3})
    split = _split(POOL, MIXED)
    data.FEATURES.clear()
    hits, misses = data.FEATURES.hits, data.FEATURES.misses
    first = run_trial(method, "tiny-roberta", get_task("SST-2"), split, hp, CPU)
    assert data.FEATURES.misses - misses == 2  # the train split and the dev split, once each
    ran, hits = len(calls), data.FEATURES.hits
    assert ran > 0
    second = run_trial(method, "tiny-roberta", get_task("SST-2"), split, hp, CPU)
    assert data.FEATURES.misses - misses == 2  # nothing new
    assert data.FEATURES.hits - hits == 3  # train once, dev at steps 10 and 20
    assert len(calls) == ran  # the backbone did not run again
    assert second.dev == first.dev and second.history == first.history
    run_trial(method, "tiny-roberta", get_task("SST-2"), _split(POOL, POOL[:4]), hp, CPU)
    assert data.FEATURES.misses - misses == 3  # another dev set is another entry


def test_training_demonstrations_are_drawn_from_the_run_generator():
    """Training renders demonstrations afresh each epoch from the run's generator."""
    b = fresh_backbone("tiny-roberta", CPU)
    model = get_method("prompt-finetune-demo").build(
        b, get_task("SST-2"), _hp("prompt-finetune-demo")
    )
    a = data.encode(model, POOL, POOL, np.random.default_rng(SEED))
    assert data.encode(model, POOL, POOL, np.random.default_rng(SEED)) == a
    assert data.encode(model, POOL, POOL, np.random.default_rng(SEED + 1)) != a
