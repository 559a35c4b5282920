"""The soft-prompt methods (prompt tuning, P-tuning in both settings, prefix-tuning, P-Tuning v2)
on the tiny backbones, with both heads: training moves only their parameters, counts follow
the formulas, the read position and predictions survive prepended vectors, padding side and
batch company, and a saved prompt reloads to the same scores."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from bench.backbones.cache import fresh_backbone
from bench.backbones.catalog import availability
from bench.cli import app as cli
from bench.core.errors import BackboneError
from bench.engine.data import collate
from bench.engine.model import ClassifierHead
from methods import get_method
from tasks import Example, get_task

TASK = get_task("SST-2")
CPU = torch.device("cpu")
BACKBONES = ["tiny-bert", "tiny-roberta", "tiny-llama"]
METHODS = ["prompt-tuning", "p-tuning", "p-tuning-full", "prefix-tuning", "p-tuning-v2"]
CASES = [(m, h) for m in METHODS for h in ("lm", "classifier")]
EXAMPLES = [
    Example("a gripping , beautifully acted film", 1),
    Example("dull , lifeless and far too long", 0),
    Example("one of the best movies of the year , full of heart and wit", 1),
    Example("bad", 0),
    Example("warm and funny", 1),
    Example("the plot makes no sense and the jokes fall flat every single time", 0),
]
LR = {"p-tuning-full": 3e-4}  # the others: 1e-3


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny models: one thread


def build(backbone: str, method: str, head: str, seed: int = 0, **options):
    m = get_method(method)
    hp = m.hyperparameters({"head": head, **options})
    b = fresh_backbone(backbone, CPU)
    m.check(b, hp)
    torch.manual_seed(seed)
    return m.build(b, TASK, hp).eval(), hp, b


def batch_of(model, examples=EXAMPLES) -> dict:
    return collate([model.encoder.encode(e) for e in examples], examples, model.pad_id)


def scores(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(batch)


def train_steps(model, batch, lr: float, steps: int) -> None:
    """Adam steps on one batch, dropout off and no weight decay: deterministic, and only a
    gradient moves a parameter. (Random tiny encoders barely let a prompt change the output,
    so the loss falls slowly there; the check is that it falls.)"""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.eval()
    for _ in range(steps):
        model.loss(model(batch), batch).backward()
        opt.step()
        opt.zero_grad()


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@dataclass
class Trained:
    """One (backbone, method, head) trained 10 steps on the fixed batch, with its before."""

    model: object
    batch: dict
    loss_before: float
    loss_after: float
    frozen_before: dict
    trainable_before: dict


@pytest.fixture(scope="module")
def trained():
    """Train each case once for the tests that read a trained model (they do not change it)."""
    done = {}

    def get(backbone: str, method: str, head: str) -> Trained:
        if (backbone, method, head) not in done:
            model, _, _ = build(backbone, method, head)
            batch = batch_of(model)
            frozen = {
                n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad
            }
            start, before = trainable_state(model), model.loss(scores(model, batch), batch).item()
            train_steps(model, batch, LR.get(method, 1e-3), steps=10)
            after = model.loss(scores(model, batch), batch).item()
            done[backbone, method, head] = Trained(model, batch, before, after, frozen, start)
        return done[backbone, method, head]

    return get


# --- training ---------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method,head", CASES)
def test_training_lowers_the_loss(backbone, method, head, trained):
    t = trained(backbone, method, head)
    assert t.loss_after < t.loss_before


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method,head", CASES)
def test_training_moves_only_the_method_parameters(backbone, method, head, trained):
    t = trained(backbone, method, head)
    for name, p in t.model.named_parameters():
        if name in t.frozen_before:
            assert torch.equal(p, t.frozen_before[name]), f"frozen {name} changed"
    now = trainable_state(t.model)
    moved = [n for n, p in now.items() if not torch.equal(p, t.trainable_before[n])]
    assert any(n.startswith("adapter.") for n in moved)  # the gradient reaches the prompt
    if method != "p-tuning-full":
        assert not any(n.startswith("body.") for n in moved)


# --- parameter counts -------------------------------------------------------------------


def _lstm(inp: int, h: int, layers: int = 2) -> int:
    """A bidirectional LSTM's parameters: per layer and direction 4h(in + h) + 8h."""
    return sum(2 * (4 * h * ((inp if i == 0 else 2 * h) + h) + 8 * h) for i in range(layers))


def _linear(i: int, o: int) -> int:
    return i * o + o


def expected_method_params(method: str, hp: dict, config, n_pseudo: int) -> int:
    """Each method's own trainable parameters, from its paper's formula."""
    h, layers = config.hidden_size, config.num_hidden_layers
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    d = kv * (getattr(config, "head_dim", None) or h // config.num_attention_heads)
    if method == "prompt-tuning":
        return hp["tokens"] * h  # N·H
    if method in ("p-tuning", "p-tuning-full"):  # embeddings, LSTM (H/2 each way), MLP
        return n_pseudo * h + _lstm(h, h // 2) + _linear(h, h) + _linear(h, h)
    if method == "prefix-tuning":  # embeddings (N, D), MLP D -> mlp -> L·2·D
        n, mid = hp["tokens"], hp["mlp"]
        return n * d + _linear(d, mid) + _linear(mid, layers * 2 * d)
    return layers * 2 * hp["tokens"] * d  # p-tuning-v2: L·2·N·D


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method,head", CASES)
def test_trainable_count_is_the_formula(backbone, method, head):
    from bench.engine.measure import parameter_report

    model, hp, b = build(backbone, method, head)
    config = b.model.config
    report = parameter_report(model, b.num_parameters())
    n_pseudo = len(model.encoder.encode(EXAMPLES[0]).pseudo)
    own = expected_method_params(method, hp, config, n_pseudo)
    classifier = ClassifierHead.size(config.hidden_size, TASK.num_labels)
    if method == "p-tuning-full":  # the whole backbone trains too (with its LM head, if read)
        backbone = b.num_parameters() if head == "lm" else model.body.num_parameters()
        assert report["trainable"] == backbone + own + (head == "classifier") * classifier
    else:
        assert report["head"] == (classifier if head == "classifier" else 0)
        assert report["method"] == own


# --- read position, padding, batch company ----------------------------------------------


def _left_padded(batch: dict) -> dict:
    """The same rows padded on the left: every index into a row moves by its padding."""
    mask = batch["attention_mask"]
    width, lengths = mask.shape[1], mask.sum(1)
    pad = width - lengths  # (B,)
    out = dict(batch)
    out["input_ids"] = torch.stack([r.roll(int(p)) for r, p in zip(batch["input_ids"], pad)])
    out["attention_mask"] = torch.stack([r.roll(int(p)) for r, p in zip(mask, pad)])
    out["position"] = batch["position"] + pad
    if "pseudo" in batch:
        out["pseudo"] = batch["pseudo"] + pad[:, None]
    return out


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method,head", CASES)
def test_predictions_do_not_depend_on_padding_side_or_batch_company(
    backbone, method, head, trained
):
    t = trained(backbone, method, head)
    model, batch = t.model, t.batch
    assert batch["attention_mask"].sum(1).min() < batch["attention_mask"].shape[1]  # padded
    right = scores(model, batch)
    torch.testing.assert_close(scores(model, _left_padded(batch)), right, rtol=0, atol=1e-5)
    short = min(range(len(EXAMPLES)), key=lambda i: len(EXAMPLES[i].text_a))
    alone = scores(model, batch_of(model, [EXAMPLES[short]]))
    torch.testing.assert_close(alone[0], right[short], rtol=0, atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method,head", CASES)
def test_head_reads_the_answer_token_after_virtual_tokens(backbone, method, head):
    """Watch the body: the vector the head reads is the body's output at the input position
    that holds the answer token ([MASK] / last prompt token; [CLS] / last token for a
    classifier head), which prompt tuning moves right by its N vectors."""
    # No pseudo token right before the answer, so the answer token keeps its embedding.
    options = {"pseudo": "2,2,0"} if method.startswith("p-tuning") and "v2" not in method else {}
    model, hp, b = build(backbone, method, head, **options)
    seen = {}
    model.body.register_forward_pre_hook(
        lambda mod, args, kw: seen.update(embeds=kw["inputs_embeds"]), with_kwargs=True
    )
    model.body.register_forward_hook(lambda mod, a, out: seen.update(hidden=out.last_hidden_state))
    batch = batch_of(model)
    with torch.no_grad():
        features = model.features(batch)
    shift = hp["tokens"] if method == "prompt-tuning" else 0
    words = model.body.get_input_embeddings()
    for row, pos in enumerate(batch["position"].tolist()):
        token = batch["input_ids"][row, pos]
        length = int(batch["attention_mask"][row].sum())
        if model.encoder.r.style == "prompt" and b.kind == "mlm":  # a template's [MASK]
            assert token == b.tokenizer.mask_token_id
        elif b.kind == "causal":
            assert pos == length - 1
        else:
            assert pos == 0 and token == b.tokenizer.cls_token_id
        assert torch.equal(seen["embeds"][row, pos + shift], words.weight[token])
        assert torch.equal(features[row], seen["hidden"][row, pos + shift])


# --- save and reload --------------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method,head", CASES)
def test_saved_soft_prompt_reloads_to_identical_scores(backbone, method, head, trained, tmp_path):
    t = trained(backbone, method, head)
    path = tmp_path / "trained.pt"
    torch.save(trainable_state(t.model), path)
    fresh, _, _ = build(backbone, method, head, seed=1)
    assert not torch.equal(scores(fresh, t.batch), scores(t.model, t.batch))  # another init
    saved = torch.load(path)
    missing, unexpected = fresh.load_state_dict(saved, strict=False)
    assert not unexpected
    state = fresh.state_dict(keep_vars=True)
    loaded = {id(state[k]) for k in saved}  # a tied LM head is loaded with the embeddings
    assert not [k for k in missing if state[k].requires_grad and id(state[k]) not in loaded]
    assert torch.equal(scores(fresh, t.batch), scores(t.model, t.batch))


# --- options, rendering, refusals ---------------------------------------------------------


def test_p_tuning_template_places_pseudo_tokens_around_sentence_and_before_mask():
    model, _, b = build("tiny-roberta", "p-tuning", "lm", pseudo="1,2,3")
    e = model.encoder.encode(EXAMPLES[0])
    assert len(e.pseudo) == 6
    ids = list(e.ids)
    assert ids[e.position] == b.tokenizer.mask_token_id
    assert list(e.pseudo[-3:]) == [e.position - 3, e.position - 2, e.position - 1]
    assert e.pseudo[0] == 1  # right after <s>
    assert all(ids[i] == model.encoder.pseudo_id for i in e.pseudo)
    # The other methods' renderings carry no pseudo tokens and no "pseudo" batch entry.
    plain, _, _ = build("tiny-roberta", "prompt-tuning", "lm")
    assert "pseudo" not in batch_of(plain)


def test_p_tuning_settings_are_distinct_methods_and_labels():
    frozen, full = get_method("p-tuning"), get_method("p-tuning-full")
    assert (frozen.family, full.family) == ("prompt", "full")
    assert frozen.label(frozen.hyperparameters()) != full.label(full.hyperparameters())


def test_prompt_tuning_initialisations():
    model, hp, b = build("tiny-roberta", "prompt-tuning", "lm", init="text", init_text="Great!")
    table = b.model.get_input_embeddings().weight
    text = b.tokenizer("Great!", add_special_tokens=False)["input_ids"]
    vectors = model.adapter.vectors
    assert torch.equal(vectors[: len(text)], table[text])  # no <s> at the front
    assert torch.equal(vectors[len(text) : 2 * len(text)], table[text])  # repeated to fill N
    model, _, _ = build("tiny-roberta", "prompt-tuning", "lm", init="labels")
    great = b.tokenizer(" great", add_special_tokens=False)["input_ids"]
    assert torch.allclose(model.adapter.vectors[1], table[great].mean(0))


def test_prefix_started_from_text_acts_as_that_text_before_the_input():
    """P-Tuning v2's text start on a causal LM: keys and values land in the right layer, head
    and order (keys, then values) exactly when reading text + input gives the same states."""
    model, hp, b = build("tiny-llama", "p-tuning-v2", "lm", init_text="the film was")
    text = b.tokenizer("the film was", add_special_tokens=False)["input_ids"]
    ids = (text * hp["tokens"])[: hp["tokens"]]
    x = b.tokenizer("a good film", add_special_tokens=False)["input_ids"]
    embeds = model.body.get_input_embeddings()(torch.tensor([x]))
    with torch.no_grad():
        e, mask, extra, _ = model.adapter(embeds, torch.ones(1, len(x), dtype=torch.long), {})
        prefixed = model.body(inputs_embeds=e, attention_mask=mask, **extra).last_hidden_state
        read = model.body(input_ids=torch.tensor([ids + x])).last_hidden_state[:, len(ids) :]
    torch.testing.assert_close(prefixed, read, rtol=0, atol=1e-5)
    random, _, _ = build("tiny-llama", "p-tuning-v2", "lm", init="random")
    assert not torch.equal(
        random.adapter.encoder.embedding.weight, model.adapter.encoder.embedding.weight
    )


@pytest.mark.parametrize("method", METHODS)
def test_encoder_backbone_takes_the_classifier_head_and_refuses_the_lm_head(method):
    if availability("minilm-l6") != "available":
        pytest.skip("minilm-l6 is not installed")
    with pytest.raises(BackboneError, match="head=classifier"):
        build("minilm-l6", method, "lm")
    model, _, _ = build("minilm-l6", method, "classifier")
    batch = batch_of(model)
    right = scores(model, batch)
    assert right.shape == (len(EXAMPLES), 2) and torch.isfinite(right).all()
    torch.testing.assert_close(scores(model, _left_padded(batch)), right, rtol=0, atol=1e-5)


def test_params_command_counts_soft_prompts_on_large_backbones(capsys):
    assert cli.main(["params", *(f"--method={m}" for m in METHODS)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    pct = {(r[0], r[1]): float(r[-1]) for r in rows}
    trainable = {(r[0], r[1]): int(r[-2].replace(",", "")) for r in rows}
    assert trainable["roberta-large", "prompt-tuning"] == 20 * 1024
    assert trainable["bert-large-uncased", "p-tuning-v2"] == 24 * 2 * 20 * 1024 + 1_051_650
    for backbone in ("roberta-large", "bert-large-uncased"):
        assert 0.001 < pct[backbone, "prompt-tuning"] < 0.05
        assert 0.1 < pct[backbone, "p-tuning-v2"] < 3  # P-Tuning v2's reported range
        assert 1 < pct[backbone, "p-tuning"] < 6  # the LSTM prompt encoder counts
        assert 1 < pct[backbone, "prefix-tuning"] < 10  # so does the reparameterising MLP
        assert pct[backbone, "p-tuning-full"] > 100


# --- the command line -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sst2(tmp_path_factory):
    """A small SST-2 in GLUE layout: enough rows for K=4 per label."""
    root = tmp_path_factory.mktemp("data")
    (root / "SST-2").mkdir()
    good = ["a joy", "great fun", "moving and smart", "superb", "lovely", "witty", "a gem"]
    bad = ["a mess", "dull", "boring and slow", "awful", "tedious", "a bore", "lifeless"]
    rows = [f"{t} {i}\t{y}" for i in range(2) for ts, y in ((good, 1), (bad, 0)) for t in ts]
    (root / "SST-2" / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (root / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[:6]) + "\n")
    return root


@pytest.mark.parametrize("backbone", ["tiny-roberta", "tiny-llama"])
@pytest.mark.parametrize("method", METHODS)
def test_tunebench_run_writes_a_record(backbone, method, tiny_sst2, tmp_path, capsys):
    import json

    out = tmp_path / "record.json"
    args = ["run", "--backbone", backbone, "--method", method, "--k", "4", "--seed", "13"]
    args += ["--data-dir", str(tiny_sst2), "--out", str(out), "--device", "cpu"]
    args += ["--set", "steps=2", "--set", "eval_every=2", "--set", "batch_size=4"]
    assert cli.main(args) == 0
    rec = json.loads(out.read_text())
    assert rec["cell"]["method_label"] == method
    assert rec["params"]["trainable"] > 0 and rec["memory"]["peak_bytes"] > 0
    assert 0 <= rec["test_score"] <= 1 and not math.isnan(rec["test_score"])
    assert method in capsys.readouterr().out
