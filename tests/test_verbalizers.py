"""The verbalizers beyond ``manual`` (KPT, ProtoVerb, soft) on the tiny backbones: KPT's
refinement drops what it should and keeps what it should, a one-word uncalibrated KPT is the
manual verbalizer, ProtoVerb's two losses fall, soft starts as manual, learned heads train on
cached frozen-trunk features, and the word lists reach the record. (The parameter-count,
frozen-weight and determinism contract is in test_methods_contract.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bench.backbones.cache import fresh_backbone
from bench.engine.data import collate
from bench.engine.prompts import Tokens
from bench.engine.train import Hyper, train
from bench.run.runner import prepare
from methods import get_method
from methods.verbalizers import kpt
from methods.verbalizers.protoverb import ProtoHead, instance_instance_loss
from tasks import Example, get_task

TASK = get_task("SST-2")
CPU = torch.device("cpu")
TINY = ["tiny-bert", "tiny-roberta", "tiny-llama"]
EXAMPLES = [
    Example("a gripping , beautifully acted film", 1),
    Example("dull , lifeless and far too long", 0),
    Example("one of the best movies of the year , full of heart and wit", 1),
    Example("bad", 0),
    Example("warm and funny", 1),
    Example("the plot makes no sense and the jokes fall flat every single time", 0),
    Example("a small , sweet and lovely film", 1),
    Example("tedious and boring", 0),
]
SPLIT = SimpleNamespace(train=EXAMPLES, dev=EXAMPLES, seed=13, fingerprint="test-verbalizers")


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny models: one thread


def build(backbone: str, method: str, backbone_obj=None, **options):
    """As the runner does: check, search, build (seeded)."""
    m = get_method(method)
    hp = m.hyperparameters(options)
    b = backbone_obj or fresh_backbone(backbone, CPU)
    m.check(b, hp)
    found, _ = prepare(m, b, TASK, SPLIT, hp)
    if found is not None:
        hp = {**hp, "found": found}
    torch.manual_seed(0)
    return m.build(b, TASK, hp).eval(), hp


def scores(model, examples=EXAMPLES) -> torch.Tensor:
    batch = collate([model.encoder.encode(e) for e in examples], examples, model.pad_id)
    with torch.no_grad():
        return model(batch)


def clean_words(b, exclude: set[int], n: int) -> list[int]:
    """``n`` token ids of clean words (as KPT accepts them) of the tiny vocabulary."""
    tokens = Tokens(b.tokenizer, b.kind)
    out = []
    for t in range(len(b.tokenizer)):
        if t not in exclude and kpt.clean_word(tokens, t, lowercase=True):
            out.append(t)
            if len(out) == n:
                return out
    raise AssertionError("the tiny vocabulary has too few clean words")


# --- KPT ----------------------------------------------------------------------------------


def test_kpt_drops_a_word_with_near_zero_prior_and_keeps_a_normal_one():
    """Two words are planted next to "great" in tiny-roberta's (tied) embedding table, so they
    are its nearest candidates and the LM scores them as it scores "great"; one of them gets
    an output bias of -30, so its prior is e^-30 times the others' and must be dropped."""
    b = fresh_backbone("tiny-roberta", CPU)
    tokens = Tokens(b.tokenizer, b.kind)
    great, terrible = tokens.word_id("great"), tokens.word_id("terrible")
    rare, normal = clean_words(b, {great, terrible}, 2)
    table = b.model.get_input_embeddings().weight
    bias = b.model.get_output_embeddings().bias
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for t in (rare, normal):
            table[t] = table[great] + 1e-3 * torch.randn(table.shape[1], generator=gen)
            bias[t] = bias[great]
        bias[rare] -= 30.0
    model, hp = build("tiny-roberta", "zero-shot", b, verbalizer="kpt", kpt_relevance=False)
    positive = hp["found"]["kpt"]["classes"][1]
    assert positive["manual"] == "great"
    kept = {e["id"] for e in positive["kept"]}
    dropped = {e["id"]: e["reason"] for e in positive["dropped"]}
    assert normal in kept and great in kept
    assert rare not in kept and "prior below" in dropped[rare]
    # the head reads exactly the kept words, and the record gets them
    assert sorted(model.head.ids.tolist()) == sorted(
        e["id"] for c in hp["found"]["kpt"]["classes"] for e in c["kept"]
    )
    described = model.head.describe()["classes"][1]
    assert described["words"] == [e["word"] for e in positive["kept"]]


@pytest.mark.parametrize("backbone", TINY)
def test_kpt_word_lists_are_clean_disjoint_and_start_with_the_manual_word(backbone):
    model, hp = build(backbone, "zero-shot", verbalizer="kpt", kpt_prior_floor=0.0)
    classes = hp["found"]["kpt"]["classes"]
    seen = set()
    for c, word in zip(classes, model.encoder.r.prompt.words):
        assert c["manual"] == word and c["kept"][0]["word"] == word  # the anchor
        ids = [e["id"] for e in c["kept"]]
        assert not seen & set(ids), "a word is kept in two classes"
        seen |= set(ids)
        for e in c["kept"] + c["dropped"]:
            assert e["word"].isalpha() and e["word"].islower()
        for e in c["dropped"]:
            assert e["reason"]
    assert len(seen) > len(classes)  # neighbours were added, not only the manual words


@pytest.mark.parametrize("backbone", TINY)
def test_one_word_uncalibrated_kpt_scores_as_manual(backbone):
    manual, _ = build(backbone, "zero-shot")
    one, _ = build(backbone, "zero-shot", verbalizer="kpt", kpt_words=1, kpt_calibrate=False)
    assert torch.allclose(scores(manual), scores(one), atol=1e-5)
    calibrated, _ = build(backbone, "zero-shot", verbalizer="kpt", kpt_words=1)
    # calibration by the prior shifts each class's score by -log prior: differences change
    shift = (scores(calibrated) - scores(one))[0]
    assert torch.allclose(
        scores(calibrated) - scores(one), shift.expand(len(EXAMPLES), -1), atol=1e-5
    )
    assert not torch.allclose(shift[0], shift[1])


# --- ProtoVerb ----------------------------------------------------------------------------


def test_protoverb_losses_fall_when_trained():
    """On two noisy clusters of hidden states, training the projection and prototypes lowers
    both the instance-prototype and the instance-instance loss."""
    b = fresh_backbone("tiny-llama", CPU)
    hidden = b.model.config.hidden_size
    torch.manual_seed(0)
    head = ProtoHead(b.model, [0, 1], classes=2, dim=16, temp=0.1, mix=0.0)
    centres = torch.randn(2, hidden)
    labels = torch.arange(32) % 2
    h = centres[labels] + 2.0 * torch.randn(32, hidden)

    def losses():
        with torch.no_grad():
            proto = F.cross_entropy(head(h), labels).item()
            return proto, head.auxiliary_loss(labels).item()

    before = losses()
    opt = torch.optim.Adam(head.learned.parameters(), lr=1e-2)
    for _ in range(30):
        loss = F.cross_entropy(head(h), labels) + head.auxiliary_loss(labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = losses()
    assert after[0] < 0.5 * before[0], (before, after)
    assert after[1] < before[1] - 0.3, (before, after)


def test_instance_instance_loss_is_low_for_separated_classes_and_zero_without_partners():
    labels = torch.tensor([0, 0, 1, 1])
    apart = F.normalize(torch.tensor([[1.0, 0], [1, 0.01], [0, 1], [0.01, 1]]), dim=-1)
    mixed = F.normalize(torch.tensor([[1.0, 0], [0, 1], [1, 0.01], [0.01, 1]]), dim=-1)
    assert instance_instance_loss(apart, labels, 0.1) < 0.01
    assert instance_instance_loss(mixed, labels, 0.1) > 5.0
    assert instance_instance_loss(apart, torch.tensor([0, 1, 2, 3]), 0.1) == 0.0


def test_protoverb_mixed_with_manual_adds_the_manual_scores():
    model, hp = build("tiny-llama", "lora", head="lm", verbalizer="proto", proto_mix=1.0)
    manual, _ = build("tiny-llama", "lora", head="lm")
    head = model.head
    got = scores(model)
    alone = head.similarity(head._seen).log_softmax(-1)
    assert torch.allclose(got, alone + scores(manual).log_softmax(-1), atol=1e-5)


# --- soft ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", TINY)
def test_soft_starts_as_the_manual_verbalizer(backbone):
    manual, _ = build(backbone, "lora", head="lm")
    soft, _ = build(backbone, "lora", head="lm", verbalizer="soft")
    assert torch.allclose(scores(manual), scores(soft), atol=1e-5)
    # its vectors are its own copies, and they are what it reads
    with torch.no_grad():
        soft.head.learned["vectors"][0] += torch.randn(soft.head.learned["vectors"].shape[1])
    assert not torch.allclose(scores(manual), scores(soft), atol=1e-3)


# --- training paths -------------------------------------------------------------------------


@pytest.mark.parametrize("verbalizer", ["kpt", "proto", "soft"])
def test_learned_heads_train_on_cached_features_of_a_frozen_trunk(verbalizer):
    """With the trunk frozen (only ``head.learned`` trains) the trainer runs the trunk once and
    trains the head on cached features: the head still learns and its learning rate holds."""
    model, hp = build("tiny-llama", "lora", head="lm", verbalizer=verbalizer)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("head.learned."))
    assert model.trunk_frozen
    labels = torch.tensor([e.label for e in EXAMPLES])
    loss_before = F.cross_entropy(scores(model), labels)
    calls = []
    features = model.features
    model.features = lambda batch: calls.append(1) or features(batch)
    before = {n: p.detach().clone() for n, p in model.head.learned.named_parameters()}
    train(model, TASK, EXAMPLES, EXAMPLES, Hyper.from_dict({**hp, "steps": 10}), 13)
    assert len(calls) <= 1, "the frozen trunk ran more than once over the same examples"
    moved = [n for n, p in model.head.learned.named_parameters() if not torch.equal(p, before[n])]
    assert moved == list(before)
    assert F.cross_entropy(scores(model.eval()), labels) < loss_before


def test_the_record_keeps_the_word_lists(data_root):
    from bench.run.runner import Cell, run_cell

    rec = run_cell(
        Cell("tiny-roberta", "SST-2", "zero-shot", k=4),
        {"verbalizer": "kpt"},
        data_root,
        device=CPU,
    )
    assert rec["cell"]["method_label"] == "zero-shot+kpt"
    found = rec["found"]["kpt"]["classes"]
    described = rec["config"]["verbalizer"]["classes"]
    assert [c["words"] for c in described] == [[e["word"] for e in c["kept"]] for c in found]
    assert rec["params"]["trainable"] == 0 and rec["time"]["prompt_search_s"] > 0
