"""PTR (methods/ptr.py, tasks/ptr_rules.py) on the tiny backbones: class scores are the sum of
the sub-answers' log-probabilities (checked against the backbone's own full LM head), the
answer positions are the right tokens, predictions do not depend on padding or batch company,
and tasks without rules are refused with the list of those that have them."""

from __future__ import annotations

import json

import pytest
import torch

from bench.backbones.cache import fresh_backbone
from bench.cli.app import main as cli
from bench.core.errors import BackboneError, TunebenchError
from bench.engine.data import collate
from bench.engine.prompts import Encoder, Renderer
from methods import get_method
from tasks import Example, Prompt, get_task
from tasks.ptr_rules import RULES

CPU = torch.device("cpu")
BACKBONES = ["tiny-bert", "tiny-roberta", "tiny-llama"]
SINGLE = [
    Example("a gripping , beautifully acted film", 1),
    Example("dull", 0),
    Example("one of the best movies of the year , full of heart and wit and fun", 1),
]
PAIRS = [
    Example("the cat sat on the mat .", 1, "a cat is sitting ."),
    Example("nobody came to the party .", 0, "the party was full of people who had a lot of fun ."),
    Example("he is at home .", 2, "he likes music ."),
]


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny models: one thread


def build(backbone: str, task: str, **options):
    method = get_method("ptr")
    hp = method.hyperparameters(options)
    b = fresh_backbone(backbone, CPU)
    method.check(b, hp)
    torch.manual_seed(0)
    return method.build(b, get_task(task), hp).eval(), b


def batch_of(model, examples) -> dict:
    return collate([model.encoder.encode(e) for e in examples], examples, model.pad_id)


def scores(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(batch)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("task, examples", [("SST-2", SINGLE), ("MNLI", PAIRS)])
def test_class_score_is_the_sum_of_sub_answer_log_probs(backbone, task, examples):
    """score(c) = sum_j log softmax over slot j's words of the full LM head's logits at slot j,
    taken at v_j(c); computed here from the backbone's own forward (all vocabulary logits)."""
    model, b = build(backbone, task)
    batch = batch_of(model, examples)
    prompt = model.encoder.r.prompt
    tok = model.encoder.tokens
    with torch.no_grad():
        logits = b.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits  # (B, T, V)
    expected = torch.zeros(len(examples), len(prompt.words))
    slots = len(prompt.words[0])
    for i in range(len(examples)):
        for j in range(slots):
            words = list(dict.fromkeys(w[j] for w in prompt.words))  # slot j's vocabulary
            ids = [tok.word_id(w) for w in words]
            at = logits[i, batch["position"][i, j], ids].log_softmax(-1)
            for c, conj in enumerate(prompt.words):
                expected[i, c] += at[words.index(conj[j])]
    torch.testing.assert_close(scores(model, batch), expected, rtol=0, atol=1e-5)
    if task == "MNLI":  # neutral = (No, No): both sub-answers "No", shared with other classes
        assert prompt.words[2] == ("No", "No") and len({w[1] for w in prompt.words}) == 2


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-roberta"])
def test_mlm_reads_one_mask_token_per_sub_prompt(backbone):
    model, b = build(backbone, "MNLI")
    for ex in PAIRS:
        e = model.encoder.encode(ex)
        masks = [i for i, t in enumerate(e.ids) if t == b.tokenizer.mask_token_id]
        assert list(e.position) == masks and len(masks) == len(RULES["MNLI"].sub_prompts)


@pytest.mark.parametrize("task, examples", [("SST-2", SINGLE), ("MNLI", PAIRS), ("MRPC", PAIRS)])
def test_causal_reads_the_last_token_of_each_sub_query(task, examples):
    """On a causal LM slot j is read at the last token of the text before it, and the input
    ends at the last slot (the answers are never in the input)."""
    model, b = build("tiny-llama", task)
    template = RULES[task].prompts["causal"].template
    queries = template.split("{mask}")[:-1]
    for ex in examples[:2]:
        e = model.encoder.encode(ex)
        assert e.position[-1] == len(e.ids) - 1
        for j, pos in enumerate(e.position):
            upto = b.tokenizer.decode(list(e.ids[: pos + 1]))
            assert upto.endswith(queries[j].rsplit("\n", 1)[-1]), (upto, queries[j])
            if "Answer:" in template:  # the j-th "Answer:" is slot j's
                assert upto.count("Answer:") == j + 1


@pytest.mark.parametrize("backbone", BACKBONES)
def test_predictions_do_not_depend_on_padding_or_batch_company(backbone):
    model, _ = build(backbone, "MNLI")
    batch = batch_of(model, PAIRS)
    assert batch["position"].shape == (len(PAIRS), 2)
    assert batch["attention_mask"].sum(1).min() < batch["attention_mask"].shape[1]  # padded
    together = scores(model, batch)
    for i, ex in enumerate(PAIRS):
        alone = scores(model, batch_of(model, [ex]))
        torch.testing.assert_close(alone[0], together[i], rtol=0, atol=1e-5)
    wider = dict(batch)  # more padding on the right
    extra = torch.full((len(PAIRS), 5), model.pad_id)
    wider["input_ids"] = torch.cat([batch["input_ids"], extra], 1)
    wider["attention_mask"] = torch.cat([batch["attention_mask"], torch.zeros_like(extra)], 1)
    torch.testing.assert_close(scores(model, wider), together, rtol=0, atol=1e-5)
    reordered = batch_of(model, PAIRS[::-1])
    torch.testing.assert_close(scores(model, reordered), together.flip(0), rtol=0, atol=1e-5)


def test_training_moves_predictions_toward_the_labels():
    """A few steps on one batch raise the score of the right conjunction (all weights train)."""
    model, _ = build("tiny-roberta", "MNLI")
    batch = batch_of(model, PAIRS)
    before = model.loss(scores(model, batch), batch).item()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(5):
        model.loss(model(batch), batch).backward()
        opt.step()
        opt.zero_grad()
    assert model.loss(scores(model, batch), batch).item() < 0.8 * before


def test_task_without_rules_is_refused_with_the_list():
    for task in ("trec", "STS-B"):
        with pytest.raises(TunebenchError) as err:
            build("tiny-roberta", task)
        message = str(err.value)
        assert task in message and all(name in message for name in RULES)


def test_unknown_rule_composition_lists_the_choices():
    with pytest.raises(TunebenchError, match="default") as err:
        build("tiny-roberta", "SST-2", prompt="fancy")
    assert "causal" in str(err.value)


def test_rules_words_are_one_token_on_every_offline_tokenizer():
    """Every rule of every task renders on each tiny backbone (a word of several tokens or a
    causal composition that reads the sentences late would be refused)."""
    for backbone in BACKBONES:
        b = fresh_backbone(backbone, CPU)
        kinds = ["causal"] if b.kind == "causal" else ["default"]
        for name, rules in RULES.items():
            for kind in kinds:
                enc = Encoder(
                    b.tokenizer, b.kind, get_task(name), Renderer("prompt", rules.prompts[kind])
                )
                assert all(len(ids) == len(rules.sub_prompts) for ids in enc.word_ids)


def test_several_slots_need_a_word_per_slot_and_causal_order():
    with pytest.raises(ValueError, match="2 words"):
        Prompt("{s1} It was{mask}. The review is{mask}.", ("terrible", "great"))
    llama = fresh_backbone("tiny-llama", CPU)
    sst2 = get_task("SST-2")
    words = (("terrible", "bad"), ("great", "good"))
    for template in ("{s1} It was{mask}{mask}", "{s1}?{mask}, {s2} So{mask}"):
        task = get_task("RTE") if "{s2}" in template else sst2
        with pytest.raises(BackboneError, match="after the answer slot"):
            Encoder(llama.tokenizer, "causal", task, Renderer("prompt", Prompt(template, words)))


def test_tasks_command_shows_which_tasks_have_rules(capsys):
    assert cli(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert "ptr rules" in header
    column = header.index("ptr rules")
    for line in lines[1:]:
        name = line.split(" ", 1)[0]
        if not name or not line[column:].strip() or name not in {*RULES, "trec", "STS-B"}:
            continue
        shown = line[column:].strip()
        if name in RULES:
            assert shown == " & ".join(RULES[name].sub_prompts)
        else:
            assert shown == "-"


def test_run_records_the_rules(data_root):
    from bench.run.runner import Cell, run_cell

    rec = run_cell(
        Cell("tiny-llama", "SST-2", "ptr", k=4),
        {"steps": 2, "eval_every": 2},
        data_root,
        device=CPU,
    )
    rec = json.loads(json.dumps(rec))  # as written
    assert rec["status"] == "ok" and rec["cell"]["method_label"] == "ptr"
    assert rec["config"]["verbalizer"]["sub_prompts"] == list(RULES["SST-2"].sub_prompts)
    assert rec["config"]["prompt"]["template"] == RULES["SST-2"].prompts["causal"].template
    assert rec["config"]["prompt"]["words"] == [["terrible", "negative"], ["great", "positive"]]


def test_ptr_refuses_another_verbalizer(monkeypatch):
    """PTR's rules are its verbalizer: another one is refused, not silently ignored."""
    from dataclasses import replace

    from methods.verbalizers import registry as verbalizers

    monkeypatch.setitem(verbalizers.VERBALIZERS, "other", replace(verbalizers.MANUAL, name="other"))
    method = get_method("ptr")
    hp = method.hyperparameters({"verbalizer": "other"})
    with pytest.raises(BackboneError, match="PTR's rules are its verbalizer"):
        method.check(fresh_backbone("tiny-roberta", CPU), hp)
