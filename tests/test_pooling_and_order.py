"""What a classifier head reads (``pooling``), the order of demonstrations (``order``), and the
per-example test predictions every record keeps; on the tiny backbones."""

from __future__ import annotations

import pytest
import torch

from bench.backbones.cache import fresh_backbone, pristine_backbone
from bench.backbones.catalog import CATALOG, Backbone
from bench.core.errors import TunebenchError
from bench.engine import data
from bench.engine.prompts import Encoder
from bench.engine.train import evaluate
from methods import get_method
from methods.base import renderer
from tasks import Example, get_task

CPU = torch.device("cpu")
SST2 = get_task("SST-2")
MIXED = [  # lengths differ, so a batch pads
    Example("fine .", 1),
    Example("the film was long and slow and the plot was dull , really dull .", 0),
    Example("a great movie with a great cast !", 1),
]
POOL = [Example(f"the film was {w} .", 1) for w in "good great fine nice fun".split()] + [
    Example(f"a movie so {w} !", 0) for w in "bad awful boring dull poor".split()
]

pytestmark = pytest.mark.usefixtures("one_thread_module")


def test_default_pooling_is_a_backbone_property():
    assert CATALOG["minilm-l6"].pooling == "mean"  # trained for mean pooling
    assert Backbone(CATALOG["minilm-l6"], None, None).pooling == "mean"
    assert pristine_backbone("tiny-bert").pooling == "cls"  # as LM-BFF reads BERT/RoBERTa
    assert pristine_backbone("tiny-roberta").pooling == "cls"
    assert pristine_backbone("tiny-llama").pooling == "last"


def _model(backbone: str, method: str = "head-only", **settings):
    m = get_method(method)
    return m.build(fresh_backbone(backbone, CPU), SST2, m.hyperparameters(settings)).eval()


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("pooling", ["cls", "mean", "last"])
def test_pooled_features_are_what_the_option_says_and_padding_free(backbone, pooling):
    model = _model(backbone, pooling=pooling)
    assert model.pooling == pooling
    items = [model.encoder.encode(ex) for ex in MIXED]
    with torch.no_grad():
        batch = data.collate(items, MIXED, model.pad_id)
        together = model.features(batch)  # (B, H)
        for row, (item, ex) in enumerate(zip(items, MIXED)):
            ids = torch.tensor([item.ids])
            hidden = model.body(input_ids=ids).last_hidden_state[0]  # (T, H), no padding
            expected = {"cls": hidden[0], "last": hidden[-1], "mean": hidden.mean(0)}[pooling]
            alone = model.features(data.collate([item], [ex], model.pad_id))[0]
            torch.testing.assert_close(together[row], expected, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(alone, expected, atol=1e-5, rtol=1e-4)


def test_auto_pooling_resolves_to_the_backbones():
    assert _model("tiny-bert").pooling == "cls"
    assert _model("tiny-llama").pooling == "last"
    assert _model("tiny-bert", "finetune").pooling == "cls"
    assert _model("tiny-bert", "zero-shot").pooling is None  # the LM head: the answer position


def test_pooling_in_the_label_and_bad_values_are_clear_errors():
    head_only = get_method("head-only")
    assert head_only.label(head_only.hyperparameters({})) == "head-only"
    assert head_only.label(head_only.hyperparameters({"pooling": "mean"})) == "head-only+mean-pool"
    lora = get_method("lora")
    assert lora.label(lora.hyperparameters({"pooling": "cls"})) == "lora+cls-pool"
    with pytest.raises(TunebenchError, match="pooling='max'.*choose one of"):
        head_only.hyperparameters({"pooling": "max"})
    hp = lora.hyperparameters({"head": "lm", "pooling": "mean"})
    with pytest.raises(TunebenchError, match="pooling=mean needs a classifier head"):
        lora.check(pristine_backbone("tiny-llama"), hp)
    with pytest.raises(TunebenchError, match="pooling"):  # reads the answer position
        get_method("p-tuning").hyperparameters({"pooling": "mean"})
    assert "pooling" not in get_method("zero-shot").hyperparameters({})


def test_frozen_features_are_cached_per_pooling():
    """[CLS] and mean pooling render the same ids: the feature cache must tell them apart."""
    scores = {}
    for pooling in ("cls", "mean"):
        torch.manual_seed(0)
        model = _model("tiny-bert", pooling=pooling)
        scores[pooling] = evaluate(model, SST2, MIXED, [], 13).logits
    assert not torch.allclose(torch.tensor(scores["cls"]), torch.tensor(scores["mean"]))


# --- the order of demonstrations --------------------------------------------------------


def _encoder(backbone: str, method: str, **settings) -> Encoder:
    b, m = pristine_backbone(backbone), get_method(method)
    hp = m.hyperparameters(settings)
    return Encoder(
        b.tokenizer, b.kind, SST2, renderer(b, SST2, hp, "prompt", hp["demos_per_label"])
    )


def _orders(enc: Encoder) -> list[tuple[int, ...]]:
    out = []
    for i, ex in enumerate(POOL):
        demos = enc.choose_demos(ex, POOL, data.eval_rng(13, i))
        assert sorted(d.label for d in demos) == [0] * enc.r.demos_per_label + [1] * (
            enc.r.demos_per_label
        )
        assert ex not in demos
        out.append(tuple(d.label for d in demos))
    return out


def test_in_context_shuffles_demonstrations_per_example_by_default():
    enc = _encoder("tiny-llama", "in-context")
    assert enc.r.demo_order == "random"
    orders = _orders(enc)
    assert {o[-1] for o in orders} == {0, 1}  # the label next to the query varies
    assert len(set(orders)) > 1
    assert orders == _orders(_encoder("tiny-llama", "in-context"))  # seeded per example
    sorted_enc = _encoder("tiny-llama", "in-context", order="sorted")
    assert set(_orders(sorted_enc)) == {(0, 0, 1, 1)}
    m = get_method("in-context")
    assert m.label(m.hyperparameters({"order": "sorted"})) == "in-context+sorted"
    assert m.label(m.hyperparameters({"calibrate": True})) == "in-context+cc"


def test_prompt_finetune_demo_follows_lmbff_on_a_masked_lm_and_shuffles_on_a_causal_lm():
    assert _encoder("tiny-roberta", "prompt-finetune-demo").r.demo_order == "sorted"
    assert set(_orders(_encoder("tiny-roberta", "prompt-finetune-demo"))) == {(0, 1)}
    causal = _encoder("tiny-llama", "prompt-finetune-demo")
    assert causal.r.demo_order == "random"
    assert {o[-1] for o in _orders(causal)} == {0, 1}
    forced = _encoder("tiny-llama", "prompt-finetune-demo", order="sorted")
    assert set(_orders(forced)) == {(0, 1)}


# --- per-example predictions in the record ----------------------------------------------


@pytest.mark.parametrize("method", ["head-only", "in-context"])
def test_the_record_keeps_every_test_prediction(method, data_root):
    from bench.run.runner import Cell, run_cell

    overrides = {"steps": 2, "eval_every": 2} if get_method(method).trains else {}
    rec = run_cell(Cell("tiny-roberta", "RTE", method, k=4), overrides, data_root, device=CPU)
    preds = rec["predictions"]["test"]
    n = rec["config"]["split"]["sizes"]["test"]
    probs = [[float(p) for p in row.split(",")] for row in preds["probs"].split(" ")]
    assert len(preds["labels"]) == len(preds["pred"]) == len(probs) == n
    right = sum(p == g for p, g in zip(preds["pred"], preds["labels"]))
    assert right / n == pytest.approx(rec["test_score"])
    assert all(len(row) == 2 and abs(sum(row) - 1) < 1e-3 for row in probs)
    confident = [i for i, row in enumerate(probs) if abs(row[0] - row[1]) > 1e-3]
    assert [max(range(2), key=probs[i].__getitem__) for i in confident] == [
        int(preds["pred"][i]) for i in confident
    ]
    if method == "head-only":
        assert rec["config"]["pooling"] == "cls" and rec["config"]["demonstrations"] is None
    else:
        assert rec["config"]["pooling"] is None
        assert rec["config"]["demonstrations"]["order"] == "random"
        assert rec["found"] is None  # uncalibrated: no content-free prior to find


def test_backbones_command_shows_the_default_pooling(capsys):
    from bench.cli.app import main

    assert main(["backbones"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line}
    assert rows["backbone"][:3] == ["backbone", "kind", "pooling"]
    assert rows["minilm-l6"][1:3] == ["encoder", "mean"]
    assert rows["smollm2-135m"][1:3] == ["causal", "last"]
    assert rows["roberta-large"][1:3] == ["mlm", "cls"]


def test_in_context_calibrates_with_demonstrations_in_the_prompt(data_root):
    """Zhao et al.: the content-free prior comes from the prompt the model reads, its
    demonstrations included (a prior without them calibrates another prompt)."""
    from methods.zero_shot import content_free_log_prior
    from tasks.splits import sample_split

    split = sample_split(SST2, 4, 13, data_root)
    m = get_method("in-context")
    hp = m.hyperparameters({"calibrate": True})
    b = fresh_backbone("tiny-llama", CPU)
    found = m.search(b, SST2, split, hp)
    assert found == m.search(b, SST2, split, hp)  # seeded
    prior = torch.tensor(found["content_free_log_prior"])
    assert prior.shape == (2,) and torch.allclose(prior.exp().sum(), torch.tensor(1.0), atol=1e-4)
    model = m.build(b, SST2, {**hp, "found": found})
    torch.testing.assert_close(model.head.log_prior, prior)
    bare = content_free_log_prior(_model("tiny-llama", "zero-shot"), SST2)  # no demos
    assert not torch.allclose(bare, prior, atol=1e-4)  # the demonstrations change the prior
    assert m.search(b, SST2, split, m.hyperparameters({})) == {}  # nothing to find uncalibrated
