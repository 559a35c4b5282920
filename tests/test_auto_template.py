"""lmbff-auto-template (methods/lmbff_auto_template.py) on the tiny backbones: with planted
candidates where one is clearly better on dev the search picks it, the manual template is
always a candidate, malformed generations are filtered, and a run records what it found."""

from __future__ import annotations

import types
from dataclasses import replace

import pytest
import torch

from bench.backbones.cache import fresh_backbone
from bench.core.errors import BackboneError
from bench.engine.data import collate
from bench.engine.prompts import Encoder, Renderer
from methods import get_method
from methods import lmbff_auto_template as auto
from methods.base import task_prompt, verbalizer_model
from tasks import Example, get_task

CPU = torch.device("cpu")
SST2, RTE = get_task("SST-2"), get_task("RTE")
POSITIVE = "good great fine nice fun wonderful brilliant beautiful".split()
NEGATIVE = "bad awful boring dull poor stupid worst terrible".split()
TRAIN = [Example(f"the film was {w} .", 1) for w in POSITIVE] + [
    Example(f"a movie so {w} !", 0) for w in NEGATIVE
]
GOOD, BAD = "All in all, it was", "No no no no no no"


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny models: one thread


def split(train=TRAIN, dev=TRAIN):
    return types.SimpleNamespace(train=train, dev=dev, seed=13)


def search(backbone, task=SST2, data=None, **options):
    method = get_method("lmbff-auto-template")
    hp = method.hyperparameters(options)
    return method.search(backbone, task, data or split(), {**hp, "found": {}})


def _with(prompt, phrase, kind):
    return replace(prompt, template=auto.make_template(phrase, "", kind, False))


def plant(backbone) -> None:
    """Teach the backbone the labels read through GOOD's template and the flipped labels
    through BAD's: on dev (= train here) GOOD is then clearly the best template, BAD the worst."""
    hp = get_method("lmbff-auto-template").hyperparameters()
    manual = task_prompt(backbone, SST2, hp)
    flipped = [Example(e.text_a, 1 - e.label) for e in TRAIN]
    pairs = []
    for phrase, examples in ((GOOD, TRAIN), (BAD, flipped)):
        m = verbalizer_model(backbone, SST2, hp, prompt=_with(manual, phrase, backbone.kind))
        pairs.append((m.eval(), collate([m.encoder.encode(e) for e in TRAIN], examples, m.pad_id)))
    opt = torch.optim.AdamW(backbone.model.parameters(), lr=1e-3, weight_decay=0.0)
    for _ in range(30):
        sum(m.loss(m(b), b) for m, b in pairs).backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("backbone", ["tiny-roberta", "tiny-llama"])
def test_search_picks_the_planted_best_template(backbone):
    b = fresh_backbone(backbone, CPU)
    torch.manual_seed(0)
    plant(b)
    found = search(b, generator="list", phrases=f"{BAD}|{GOOD}|Well")
    by_template = {c["template"]: c for c in found["candidates"]}
    manual = task_prompt(b, SST2, {"prompt": "auto"}).template
    good = auto.make_template(GOOD, "", b.kind, False)
    bad = auto.make_template(BAD, "", b.kind, False)
    assert found["template"] == good
    assert by_template[good]["dev"] == 1.0 and by_template[bad]["dev"] <= 0.25
    assert list(by_template) == [manual, bad, good, auto.make_template("Well", "", b.kind, False)]
    assert found["candidates"][0]["manual"] and found["generator"] == "list"


def test_candidate_scores_are_zero_shot_dev_scores():
    """Each recorded score is the template's zero-shot metric and loss on the dev set."""
    from bench.engine.train import evaluate

    b = fresh_backbone("tiny-roberta", CPU)
    dev = TRAIN[::3]
    found = search(b, data=split(dev=dev), generator="list", phrases="Well|Overall it was")
    hp = get_method("lmbff-auto-template").hyperparameters()
    manual = task_prompt(b, SST2, hp)
    for c in found["candidates"]:
        model = verbalizer_model(b, SST2, hp, prompt=replace(manual, template=c["template"]))
        ev = evaluate(model, SST2, dev, TRAIN, 13)
        assert c["dev"] == ev.metrics["acc"] and c["dev_loss"] == pytest.approx(ev.loss, abs=1e-6)


def test_manual_template_is_always_a_candidate_and_wins_ties():
    b = fresh_backbone("tiny-bert", CPU)
    found = search(b, generator="list", phrases="great|{s1}|")  # nothing usable
    assert [c["template"] for c in found["candidates"]] == [SST2.prompt.template]
    assert found["template"] == SST2.prompt.template and found["candidates"][0]["manual"]
    # every candidate scores the same: the manual one (first) is kept
    same = {"dev": 0.5, "dev_loss": 0.7}
    original = auto.dev_score
    try:
        auto.dev_score = lambda *a, **k: dict(same)
        found = search(b, generator="list", phrases="Well|Overall it was")
    finally:
        auto.dev_score = original
    assert found["template"] == SST2.prompt.template and len(found["candidates"]) == 3


def test_candidates_option_bounds_the_generated_templates():
    b = fresh_backbone("tiny-bert", CPU)
    found = search(b, generator="list", phrases="Well|Overall it was|So|In short", candidates=2)
    assert [c["template"] for c in found["candidates"]] == [
        SST2.prompt.template,
        "{s1} Well{mask}.",
        "{s1} Overall it was{mask}.",
    ]


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("It was", "It was"),
        ("1. All in all, it was", "All in all, it was"),
        ('"Overall, it was"\nsome other line', "Overall, it was"),
        ("- It was great.", "It was"),
        ("Phrase: In short, it was terrible!", "In short, it was"),
        ("", None),
        ("   \n  ", None),
        ("great", None),
        ("so great and so much fun", None),  # gives the answer away
        ("{s1} was", None),
        ("it was <mask>", None),
        ("one two three four five six seven eight nine", None),
        ("c'était très", None),
        ("!!! ...", None),
    ],
)
def test_malformed_generations_are_filtered(raw, clean):
    assert auto.clean_phrase(raw, ("terrible", "great")) == clean


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("task", [SST2, RTE])
def test_templates_are_valid_for_the_backbone(backbone, task):
    """Single and pair layouts; on a causal LM the answer comes last (the encoder accepts it)."""
    b = fresh_backbone(backbone, CPU)
    manual = task_prompt(b, task, {"prompt": "auto"})
    for after in ("", " ."):
        t = auto.make_template("All in all, it was", after, b.kind, task.is_pair)
        enc = Encoder(b.tokenizer, b.kind, task, Renderer("prompt", replace(manual, template=t)))
        pair = Example("a man sleeps .", 0, "he is awake .") if task.is_pair else None
        e = enc.encode(pair or TRAIN[0])
        assert ("{s2}" in t) == task.is_pair
        if b.kind == "causal":
            assert t.endswith("{mask}") and e.position == len(e.ids) - 1
        else:
            assert e.ids[e.position] == b.tokenizer.mask_token_id


def test_random_generator_output_is_filtered_into_valid_templates():
    """tiny-llama generates random text: whatever survives the filter renders as a template."""
    b = fresh_backbone("tiny-llama", CPU)
    found = search(b, generator="tiny-llama", candidates=4)
    assert found["generator"] == "tiny-llama" and 1 <= len(found["candidates"]) <= 5
    for c in found["candidates"][1:]:
        phrase = c["template"].removeprefix("{s1} ").removesuffix("{mask}")
        assert auto.clean_phrase(phrase, ("negative", "positive")) == phrase


def test_t5_output_parsing():
    assert auto.parse_t5("<pad> <extra_id_0> It was <extra_id_1> . <extra_id_2></s>") == (
        "It was",
        " .",
    )
    assert auto.parse_t5("<pad> <extra_id_0> A truly <extra_id_1></s>") == ("A truly", "")
    assert auto.parse_t5("<pad> no sentinels here</s>") is None


def test_auto_generator_falls_back_with_a_message(monkeypatch):
    def unavailable(name, *a):
        raise BackboneError(f"template generator {name} needs the Hugging Face hub")

    monkeypatch.setattr(auto, "t5_phrases", unavailable)
    monkeypatch.setattr(auto, "CHAT_DEFAULT", "tiny-llama")
    found = search(fresh_backbone("tiny-roberta", CPU), generator="auto", candidates=2)
    assert found["generator"] == "tiny-llama"
    assert "t5-large could not be loaded" in found["generator_note"]
    assert "Hugging Face hub" in found["generator_note"]


def test_run_records_the_search(data_root):
    from bench.run.runner import Cell, run_cell

    overrides = {"steps": 2, "eval_every": 2, "generator": "list", "phrases": "Well|So it was"}
    rec = run_cell(
        Cell("tiny-roberta", "SST-2", "lmbff-auto-template", k=4), overrides, data_root, device=CPU
    )
    found = rec["found"]
    assert rec["status"] == "ok" and rec["time"]["prompt_search_s"] > 0
    assert rec["config"]["prompt"]["template"] == found["template"]
    assert [c["template"] for c in found["candidates"]] == [
        SST2.prompt.template,
        "{s1} Well{mask}.",
        "{s1} So it was{mask}.",
    ]
    assert found["template"] in [c["template"] for c in found["candidates"]]
    best = max(c["dev"] for c in found["candidates"])
    assert next(c for c in found["candidates"] if c["template"] == found["template"])["dev"] == best


def test_finetune_top_reranks_the_best_few_and_the_manual_on_copies():
    b = fresh_backbone("tiny-roberta", CPU)
    before = {n: p.detach().clone() for n, p in b.model.named_parameters()}
    found = search(
        b, generator="list", phrases="Well|Overall it was|So", finetune_top=1, finetune_steps=2
    )
    cands = found["candidates"]
    zero_shot_best = min(
        range(len(cands)), key=lambda i: (-cands[i]["dev"], cands[i]["dev_loss"], i)
    )
    tuned = {i for i, c in enumerate(cands) if "dev_finetuned" in c}
    assert tuned == {0, zero_shot_best}
    best = max(cands[i]["dev_finetuned"] for i in tuned)
    chosen = next(c for c in cands if c["template"] == found["template"])
    assert chosen.get("dev_finetuned") == best
    assert all(torch.equal(p, before[n]) for n, p in b.model.named_parameters())
