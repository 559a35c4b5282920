"""The method contract, one test run over every registered method (STYLE.md 11).

Every method in ``methods.REGISTRY`` (each value of its ``head`` option, if it has one) is
crossed with the tiny backbones. For each cell:

- the counted trainable parameters equal the method's own formula, written below from the
  backbone's config (hidden size, layers, vocabulary, labels...), not from the model;
- training (a few steps on a fixed split) lowers the training loss; methods that do not train
  have no trainable parameters and ``train`` refuses them;
- parameters that are not trainable are bitwise unchanged by training, and every trainable
  tensor did move;
- two runs with the same seed give identical dev metrics, history and trained weights;
- refusals are clear errors, and happen exactly where the method's row says.

Adding a method means adding its row to ``CONTRACT``: a method without one fails here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch

from bench.backbones.cache import fresh_backbone
from bench.cli.app import main as cli
from bench.core.errors import BackboneError, TunebenchError, UnknownNameError
from bench.engine import data, precision
from bench.engine.measure import count, parameter_report
from bench.engine.train import Hyper, evaluate, train
from bench.run.params import count_method_params, meta_backbone
from bench.run.runner import prepare
from methods import REGISTRY, get_method
from methods.base import COMMON, Method
from tasks import Example, Task, get_task

TINY = ["tiny-bert", "tiny-roberta", "tiny-llama"]
SEED = 13
CPU = torch.device("cpu")


# --- the formulas ---------------------------------------------------------------------


@dataclass(frozen=True)
class Arch:
    """Parameter counts of a BERT/RoBERTa- or Llama-shaped backbone, from its config alone."""

    family: str  # "bert" (BERT, RoBERTa) or "llama"
    kind: str  # mlm | causal | encoder
    H: int  # hidden size
    L: int  # layers
    I: int  # noqa: E741 - feed-forward width
    V: int  # vocabulary
    P: int  # position embeddings (BERT family)
    T: int  # token types (BERT family)
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool  # output embeddings tied to the input embeddings
    C: int  # the task's labels

    @classmethod
    def of(cls, config, kind: str, task: Task) -> Arch:
        family = {"bert": "bert", "roberta": "bert", "llama": "llama"}[config.model_type]
        heads = config.num_attention_heads
        return cls(
            family=family,
            kind=kind,
            H=config.hidden_size,
            L=config.num_hidden_layers,
            I=config.intermediate_size,
            V=config.vocab_size,
            P=getattr(config, "max_position_embeddings", 0),
            T=getattr(config, "type_vocab_size", 0),
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            tied=bool(getattr(config, "tie_word_embeddings", True)),
            C=task.num_labels,
        )

    @property
    def body(self) -> int:
        """The transformer without LM head or pooler: embeddings + layers (+ final norm)."""
        H, L, I = self.H, self.L, self.I  # noqa: E741
        if self.family == "bert":
            embeddings = (self.V + self.P + self.T) * H + 2 * H  # + LayerNorm
            attention = 4 * (H * H + H) + 2 * H  # q, k, v, o with biases; LayerNorm
            ffn = (H * I + I) + (I * H + H) + 2 * H
            return embeddings + L * (attention + ffn)
        q_o = 2 * H * self.heads * self.head_dim
        k_v = 2 * H * self.kv_heads * self.head_dim
        layer = q_o + k_v + 3 * H * I + 2 * H  # no biases; gate/up/down; two RMSNorms
        return self.V * H + L * layer + H  # + final norm

    @property
    def biases(self) -> int:
        """Bias terms of the body (BitFit): embeddings LayerNorm, then per layer q, k, v, o,
        the two feed-forward projections and two LayerNorms."""
        if self.family != "bert":
            return 0
        return self.H + self.L * (4 * self.H + self.I + self.H + 2 * self.H)

    @property
    def classifier(self) -> int:
        """dense (H x H) + tanh + out (H x C), with biases."""
        return self.H * self.H + self.H + self.H * self.C + self.C

    @property
    def lm_transform(self) -> int:
        """The MLM head's dense + LayerNorm before the vocabulary projection (none on Llama)."""
        return self.H * self.H + self.H + 2 * self.H if self.family == "bert" else 0

    @property
    def lm_transform_biases(self) -> int:
        return 2 * self.H if self.family == "bert" else 0

    @property
    def lm_projection(self) -> int:
        """The vocabulary projection beyond the tied input embeddings: its bias (BERT family),
        and its weight if untied."""
        return (self.V if self.family == "bert" else 0) + (0 if self.tied else self.V * self.H)

    def lora_qv(self, r: int) -> int:
        """LoRA A (r x in) and B (out x r) on the query and value projections of each layer."""
        if self.family == "bert":
            return self.L * 2 * r * (self.H + self.H)
        q = r * (self.H + self.heads * self.head_dim)
        v = r * (self.H + self.kv_heads * self.head_dim)
        return self.L * (q + v)


def _head(a: Arch, hp: Mapping, lm: int = 0) -> int:
    """The classifier head when the method's ``head`` option picks it, else ``lm``."""
    return a.classifier if hp.get("head", "classifier") == "classifier" else lm


def _lm_read(a: Arch, hp: Mapping, biases: bool = False) -> int:
    """The backbone's LM-head weights beyond the body that the verbalizer reads (they train
    when the method trains the LM head): the transform and the projection for manual and kpt;
    the transform alone for soft (its own label vectors replace the projection's rows); nothing
    for proto alone (it reads the hidden state), as for manual when mixed with it."""
    verbalizer = hp.get("verbalizer", "manual")
    if verbalizer == "proto" and not hp.get("proto_mix"):
        return 0
    transform = a.lm_transform_biases if biases else a.lm_transform
    if verbalizer == "soft" or biases:
        return transform
    return transform + a.lm_projection


def _linear(i: int, o: int) -> int:
    return i * o + o


def _lstm(i: int, h: int, layers: int = 2) -> int:
    """A bidirectional LSTM: per layer and direction 4h(in + h) weights + 8h biases."""
    return sum(2 * (4 * h * ((i if n == 0 else 2 * h) + h) + 8 * h) for n in range(layers))


def _kv(a: Arch) -> int:
    return a.kv_heads * a.head_dim


def _p_tuning(a: Arch, hp: Mapping) -> int:
    """Pseudo-token embeddings + LSTM prompt encoder + its two-layer MLP."""
    pseudo = sum(int(n) for n in hp["pseudo"].split(","))
    return pseudo * a.H + _lstm(a.H, a.H // 2) + 2 * _linear(a.H, a.H)


@dataclass(frozen=True)
class Row:
    """One method's contract: its trainable parameters as a formula of the backbone's shape and
    the hyperparameters; the backbones it must refuse; settings (over the defaults in
    ``TRAIN``) under which a few steps must bring the training loss below ``loss_ratio`` times
    its starting value."""

    params: Callable[[Arch, Mapping], int]
    refused_on: tuple[str, ...] = ()
    train: Mapping = field(default_factory=dict)
    loss_ratio: float = 0.9


CONTRACT: dict[str, Row] = {
    "finetune": Row(lambda a, hp: a.body + a.classifier),
    "prompt-finetune": Row(lambda a, hp: a.body + _lm_read(a, hp)),
    "prompt-finetune-demo": Row(lambda a, hp: a.body + _lm_read(a, hp)),
    "lmbff-auto-template": Row(lambda a, hp: a.body + _lm_read(a, hp)),
    "ptr": Row(lambda a, hp: a.body + _lm_read(a, hp)),
    "head-only": Row(lambda a, hp: a.classifier),
    "bitfit": Row(
        lambda a, hp: a.biases + _head(a, hp, _lm_read(a, hp, biases=True)),
        refused_on=("tiny-llama", "smollm2-135m"),
        train={"lr": 1e-2},
    ),
    "lora": Row(lambda a, hp: a.lora_qv(hp["r"]) + _head(a, hp), train={"lr": 1e-2}),
    "zero-shot": Row(lambda a, hp: 0),
    "in-context": Row(lambda a, hp: 0),
    "prompt-tuning": Row(
        lambda a, hp: hp["tokens"] * a.H + _head(a, hp), train={"lr": 3e-2}, loss_ratio=0.99
    ),
    "p-tuning": Row(
        lambda a, hp: _p_tuning(a, hp) + _head(a, hp), train={"lr": 1e-2}, loss_ratio=0.99
    ),
    "p-tuning-full": Row(lambda a, hp: a.body + _p_tuning(a, hp) + _head(a, hp, _lm_read(a, hp))),
    "prefix-tuning": Row(
        lambda a, hp: (
            hp["tokens"] * _kv(a)
            + _linear(_kv(a), hp["mlp"])
            + _linear(hp["mlp"], a.L * 2 * _kv(a))
            + _head(a, hp)
        ),
        train={"lr": 1e-2},
    ),
    "autoprompt": Row(lambda a, hp: 0),  # its search: tests/test_searched_prompts.py
    "lmbff-auto-label": Row(lambda a, hp: a.body + _lm_read(a, hp)),
    "p-tuning-v2": Row(
        lambda a, hp: a.L * 2 * hp["tokens"] * _kv(a) + _head(a, hp),
        train={"lr": 1e-1},
        loss_ratio=0.95,
    ),
}

# A learned verbalizer adds its parameters (``head.learned``) to what the method trains, and
# only when the method trains; its formula, from the backbone's shape, the hyperparameters and
# (KPT) what its search kept.
VERBALIZER_PARAMS: dict[str, Callable[[Arch, Mapping], int]] = {
    "kpt": lambda a, hp: sum(len(c["kept"]) for c in hp["found"]["kpt"]["classes"]),  # weights
    "proto": lambda a, hp: _linear(a.H, hp["proto_dim"]) + a.C * hp["proto_dim"],
    "soft": lambda a, hp: a.C * a.H + (a.C if a.family == "bert" else 0),  # rows (+ biases)
}
# The verbalizer cells: the methods that do not train (kpt only: the others need training; one
# with demonstrations), two frozen-trunk methods reading the LM head (one through an input
# adapter), and prompt-based fine-tuning of the whole model.
VERBALIZER_VARIANTS = [
    ("zero-shot", {"verbalizer": "kpt"}),
    ("in-context", {"verbalizer": "kpt"}),
    *[(m, {"head": "lm", "verbalizer": v}) for m in ("lora",) for v in VERBALIZER_PARAMS],
    *[
        (m, {"verbalizer": v})
        for m in ("prompt-tuning", "prompt-finetune")
        for v in VERBALIZER_PARAMS
    ],
]


# ProtoVerb's instance-instance loss cannot fall far on the one-label training split below
# (its floor is log(B - 1) with every other example a positive): a looser ratio for it.
VERBALIZER_LOSS_RATIO = {"proto": 0.95}


def expected_params(name: str, a: Arch, hp: Mapping) -> int:
    method, verbalizer = get_method(name), hp.get("verbalizer", "manual")
    extra = VERBALIZER_PARAMS[verbalizer](a, hp) if verbalizer != "manual" and method.trains else 0
    return contract(name).params(a, hp) + extra


# The few-step training check. The tiny backbones are random: the state a classifier head reads
# barely depends on the input (its spread across these examples is ~1% of its size), so on a
# balanced split a frozen-trunk method can do no better than the prior (loss log 2) and a check
# there would test the initialisation. Every training example has the label "positive", so
# the direction to move is the same for every method; that the loss falls, through only the
# method's parameters, is what is checked. (Learning real signal is checked with real weights
# in test_real_models.py.)
# With Row.loss_ratio = 0.9, the largest ratio measured is 0.70 (lora, head=lm, tiny-bert).
TRAIN = {"steps": 10, "eval_every": 10, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0}
POSITIVE = "good great fine nice fun wonderful brilliant beautiful".split()
NEGATIVE = "bad awful boring dull poor stupid worst terrible".split()
TRAIN_SPLIT = [Example(f"the film was {w} .", 1) for w in POSITIVE] + [
    Example(f"a movie so {w} !", 1) for w in NEGATIVE
]
DEV_SPLIT = [Example(f"this one is {w} .", 1) for w in POSITIVE[::2]] + [
    Example(f"really {w} film", 0) for w in NEGATIVE[::2]
]
SST2 = get_task("SST-2")


def contract(name: str) -> Row:
    if name not in CONTRACT:
        pytest.fail(
            f"method {name!r} is registered but has no row in CONTRACT "
            f"(tests/test_methods_contract.py): add Row(params=<its trainable-parameter formula "
            f"from Arch>, refused_on=..., train=...) so the contract tests can check it"
        )
    return CONTRACT[name]


def variants(method: Method) -> list[dict]:
    """The default settings, and each other value of a ``head`` option."""
    heads = method.choices.get("head", ())
    default = method.hyperparameters().get("head")
    return [{}] + [{"head": h} for h in heads if h != default]


def _id(name: str, variant: Mapping) -> str:
    return f"{name}{''.join(f'[{k}={x}]' for k, x in variant.items())}"


CELLS = [
    pytest.param(name, v, b, id=f"{_id(name, v)}-{b}")
    for name, method in REGISTRY.items()
    for v in variants(method)
    for b in TINY
] + [
    pytest.param(name, v, b, id=f"{_id(name, v)}-{b}")
    for name, v in VERBALIZER_VARIANTS
    for b in TINY
]
METHOD_VARIANTS = [
    pytest.param(name, v, id=f"{name}{''.join(f'[{k}={x}]' for k, x in v.items())}")
    for name, method in REGISTRY.items()
    for v in variants(method)
]


pytestmark = pytest.mark.usefixtures("one_thread_module")  # tiny models: one thread


def settings(name: str, variant: Mapping) -> dict:
    return get_method(name).hyperparameters({**TRAIN, **contract(name).train, **variant})


# What a search (KPT's word lists) reads in place of a cell's K-shot split.
SEARCH_SPLIT = SimpleNamespace(train=TRAIN_SPLIT, dev=DEV_SPLIT, seed=SEED, fingerprint="contract")


def build(name: str, variant: Mapping, backbone: str):
    """As the runner builds: check, search (the verbalizer's, if it has one), build. A
    method's own prompt search (autoprompt, lmbff-auto-*) is tested in its own files
    (tests/test_searched_prompts.py, tests/test_auto_template.py); here it builds on the
    task's prompt, which is what its search starts from."""
    method, hp = get_method(name), settings(name, variant)
    b = fresh_backbone(backbone, CPU)
    method.check(b, hp)
    found, _ = prepare(dataclasses.replace(method, search=None), b, SST2, SEARCH_SPLIT, hp)
    if found is not None:
        hp = {**hp, "found": found}
    torch.manual_seed(SEED)
    return method.build(b, SST2, hp), b, hp


def split_loss(model, examples) -> float:
    """Mean loss over ``examples`` in eval mode (no dropout), demonstrations fixed by seed."""
    items = data.encode_eval(model, examples, TRAIN_SPLIT, SEED)
    batch = data.collate(items, examples, model.pad_id)
    model.eval()
    with torch.no_grad():
        return model.loss(model(batch), batch).item()


@dataclass
class Run:
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    trainable: set[str]
    loss_before: float
    loss_after: float
    dev: dict
    history: list


def run(name: str, variant: Mapping, backbone: str) -> Run:
    model, _, hp = build(name, variant, backbone)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    loss_before = split_loss(model, TRAIN_SPLIT)
    result = train(model, SST2, TRAIN_SPLIT, DEV_SPLIT, Hyper.from_dict(hp), SEED)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return Run(
        before,
        after,
        trainable,
        loss_before,
        split_loss(model, TRAIN_SPLIT),
        result.best_dev,
        result.history,
    )


@functools.cache
def first_run(name: str, variant_items: tuple, backbone: str) -> Run:
    return run(name, dict(variant_items), backbone)


def skip_unless_runs(name: str, variant: Mapping, backbone: str) -> Method:
    """Refused cells are checked by ``test_refuses_exactly_where_its_row_says``."""
    if backbone in contract(name).refused_on:
        pytest.skip(f"{name} refuses {backbone} (checked by the refusal test)")
    return get_method(name)


# --- the contract ---------------------------------------------------------------------


def test_every_registered_method_has_a_contract_row():
    missing = sorted(set(REGISTRY) - set(CONTRACT))
    assert not missing, f"methods without a CONTRACT row (add their formulas): {missing}"
    stale = sorted(set(CONTRACT) - set(REGISTRY))
    assert not stale, f"CONTRACT rows for methods that are not registered: {stale}"


@pytest.mark.parametrize("name, variant, backbone", CELLS)
def test_refuses_exactly_where_its_row_says(name, variant, backbone):
    method, hp = get_method(name), settings(name, variant)
    b = fresh_backbone(backbone, CPU)
    if backbone in contract(name).refused_on:
        with pytest.raises(BackboneError) as err:
            method.check(b, hp)
        assert name in str(err.value) and backbone in str(err.value)
    else:
        method.check(b, hp)  # no refusal


@pytest.mark.parametrize("name, variant, backbone", CELLS)
def test_trainable_parameters_equal_the_formula(name, variant, backbone):
    method = skip_unless_runs(name, variant, backbone)
    model, b, hp = build(name, variant, backbone)
    expected = expected_params(name, Arch.of(b.model.config, b.kind, SST2), hp)
    trainable = count(model.parameters())
    assert trainable == expected, f"{name} on {backbone}: counted {trainable}, formula {expected}"
    report = parameter_report(model, b.num_parameters())
    assert report["trainable"] == expected
    assert report["head"] + report["method"] == expected
    if not method.trains:
        assert expected == 0, f"{name} does not train but its formula is {expected}"


@pytest.mark.parametrize("name, variant, backbone", CELLS)
def test_training_lowers_the_loss_and_touches_only_trainable_parameters(name, variant, backbone):
    method = skip_unless_runs(name, variant, backbone)
    if not method.trains:
        model, _, hp = build(name, variant, backbone)
        with pytest.raises(TunebenchError, match="no trainable parameters"):
            train(model, SST2, TRAIN_SPLIT, DEV_SPLIT, Hyper.from_dict(hp), SEED)
        return
    r = first_run(name, tuple(sorted(variant.items())), backbone)
    assert r.trainable, f"{name} trains but has no trainable parameters"
    ratio = max(contract(name).loss_ratio, VERBALIZER_LOSS_RATIO.get(variant.get("verbalizer"), 0))
    assert r.loss_after < ratio * r.loss_before, (
        f"{name} on {backbone}: train loss {r.loss_before:.4f} -> {r.loss_after:.4f}"
    )
    moved = {n for n in r.before if not torch.equal(r.before[n], r.after[n])}
    frozen_moved = sorted(moved - r.trainable)
    assert not frozen_moved, f"frozen parameters changed: {frozen_moved}"
    still = sorted(r.trainable - moved)
    assert not still, f"trainable parameters that training never changed: {still}"


@pytest.mark.parametrize("name, variant, backbone", CELLS)
def test_same_seed_gives_identical_results(name, variant, backbone):
    method = skip_unless_runs(name, variant, backbone)
    if not method.trains:  # evaluation alone must be deterministic (demonstrations included)
        logits = []
        for _ in range(2):
            model, _, _ = build(name, variant, backbone)
            logits.append(evaluate(model, SST2, DEV_SPLIT, TRAIN_SPLIT, SEED).logits)
        assert (logits[0] == logits[1]).all()
        return
    a = first_run(name, tuple(sorted(variant.items())), backbone)
    b = run(name, variant, backbone)
    assert a.dev == b.dev
    assert a.history == b.history
    different = [n for n in a.after if not torch.equal(a.after[n], b.after[n])]
    assert not different, f"weights differ between two runs with seed {SEED}: {different}"


# --- at paper scale, on the meta device (no weights) ----------------------------------


@pytest.mark.parametrize("name, variant", METHOD_VARIANTS)
@pytest.mark.parametrize("backbone", ["roberta-base", "smollm2-135m"])
def test_formula_holds_at_paper_scale(name, variant, backbone):
    method, row = get_method(name), contract(name)
    hp = method.hyperparameters(variant)
    b = meta_backbone(backbone)
    if backbone in row.refused_on:
        with pytest.raises(BackboneError):
            method.check(b, hp)
        return
    expected = row.params(Arch.of(b.model.config, b.kind, SST2), hp)
    assert count_method_params(backbone, method, SST2, variant)["trainable"] == expected


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("name, variant", METHOD_VARIANTS)
def test_encoder_backbone_refuses_lm_head_methods_and_serves_the_others(name, variant):
    """minilm-l6 has no LM head: a method reading it is refused with the reason; the others
    build (counted on the meta device), their formula holding without a pooler."""
    method = get_method(name)
    hp = method.hyperparameters(variant)
    if method.reads_lm_head(hp):
        with pytest.raises(BackboneError) as err:
            count_method_params("minilm-l6", method, SST2, variant)
        message = str(err.value)
        assert name in message and "encoder" in message and "LM head" in message
        return
    b = meta_backbone("minilm-l6")
    expected = contract(name).params(Arch.of(b.model.config, "encoder", SST2), hp)
    assert count_method_params("minilm-l6", method, SST2, variant)["trainable"] == expected


def test_bitfit_refuses_a_backbone_without_biases():
    method = get_method("bitfit")
    with pytest.raises(BackboneError, match="no bias terms"):
        method.check(fresh_backbone("tiny-llama", CPU), method.hyperparameters())


def test_unknown_method_lists_the_choices():
    with pytest.raises(UnknownNameError) as err:
        get_method("lorra")
    assert all(name in str(err.value) for name in REGISTRY)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_unknown_setting_lists_the_method_settings(name):
    method = get_method(name)
    with pytest.raises(UnknownNameError) as err:
        method.hyperparameters({"learning_rate": "1e-3"})
    message = str(err.value)
    assert "learning_rate" in message and name in message
    assert all(key in message for key in {**COMMON, **method.defaults})


def test_bad_setting_values_are_clear_errors():
    lora = get_method("lora")
    with pytest.raises(TunebenchError, match=r"^--set lr='fast': expected a finite number > 0$"):
        lora.hyperparameters({"lr": "fast"})
    with pytest.raises(TunebenchError, match=r"head='mlp' is not allowed.*classifier.*lm"):
        lora.hyperparameters({"head": "mlp"})


def test_cli_errors_name_the_choices(capsys, data_root, tmp_path):
    cases = [
        (["--method", "lorra"], ["unknown method 'lorra'", *REGISTRY]),
        (["--method", "lora", "--set", "rank=8"], ["unknown setting", "'rank'", "alpha"]),
        (["--method", "zero-shot", "--backbone", "robrta"], ["unknown backbone", "tiny-llama"]),
        (["--method", "zero-shot", "--backbone", "minilm-l6"], ["encoder", "LM head"]),
        (["--method", "bitfit", "--backbone", "tiny-llama"], ["no bias terms"]),
    ]
    for args, words in cases:
        out = tmp_path / "record.json"
        code = cli(
            ["run", "--task", "SST-2", "--data-dir", str(data_root), "--out", str(out), *args]
        )
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert all(w in err for w in words), (args, err)
        assert "Traceback" not in err and not out.exists()


# --- measurement in every run ---------------------------------------------------------


@pytest.mark.parametrize("name", ["lora", "zero-shot"])  # a trained and an untrained method
def test_every_run_records_its_measurements(name, data_root):
    """Trainable and total parameters, peak memory of a step, wall times, examples per second."""
    from bench.run.runner import Cell, run_cell

    method = get_method(name)
    overrides = {"steps": 4, "eval_every": 4} if method.trains else {}
    rec = run_cell(Cell("tiny-roberta", "RTE", name, k=4), overrides, data_root, device=CPU)
    b = fresh_backbone("tiny-roberta", CPU)
    hp = method.hyperparameters(overrides)
    rte = get_task("RTE")
    assert rec["status"] == "ok"
    assert rec["params"]["trainable"] == contract(name).params(
        Arch.of(b.model.config, "mlm", rte), hp
    )
    assert rec["params"]["backbone_total"] == b.num_parameters()
    weights = sum(p.numel() * p.element_size() for p in b.model.parameters())
    memory = rec["memory"]
    assert memory["peak_bytes"] > weights and memory["how"] and memory["device"] == "cpu"
    t = rec["time"]
    assert t["eval_s"] > 0 and t["eval_examples_per_s"] > 0
    assert t["total_s"] >= t["build_s"] + t["train_s"] + t["eval_s"] * 0.99
    if method.trains:
        assert t["train_s"] > 0 and t["train_examples_per_s"] > 0
        assert rec["dev"]["best_step"] == 4 and len(rec["history"]) == 1
    else:
        assert t["train_s"] == 0 and t["train_examples_per_s"] is None


# --- verbalizers ------------------------------------------------------------------------


def test_every_learned_verbalizer_has_a_formula_and_contract_cells():
    from methods.verbalizers.registry import VERBALIZERS

    assert set(VERBALIZERS) - {"manual"} == set(VERBALIZER_PARAMS)
    for v in VERBALIZER_PARAMS:
        assert any(variant["verbalizer"] == v for _, variant in VERBALIZER_VARIANTS)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("backbone", TINY)
@pytest.mark.parametrize(
    "name, variant",
    [pytest.param(n, v, id=_id(n, v)) for n, v in VERBALIZER_VARIANTS if get_method(n).trains],
)
def test_a_learned_verbalizer_adds_only_its_own_parameters(name, variant, backbone):
    """Trainable = ``head.learned.*`` + what the method trains with the manual verbalizer: the
    same outside the head, and of the LM head only what this verbalizer still reads (soft
    replaces the label rows; proto alone reads no LM-head weight)."""
    manual, _, _ = build(name, {k: v for k, v in variant.items() if k != "verbalizer"}, backbone)
    model, _, _ = build(name, variant, backbone)
    learned = {n for n, _ in model.named_parameters() if n.startswith("head.learned.")}
    assert learned and learned <= _trainable(model)
    assert _trainable(model) - learned <= _trainable(manual)
    outside = {n for n in _trainable(manual) if not n.startswith("head.")}
    assert {n for n in _trainable(model) if not n.startswith("head.")} == outside


@pytest.mark.parametrize("verbalizer", ["proto", "soft"])
@pytest.mark.parametrize("name", ["zero-shot", "in-context"])
def test_learned_verbalizers_are_refused_by_methods_that_do_not_train(name, verbalizer):
    method = get_method(name)
    hp = method.hyperparameters({"verbalizer": verbalizer})
    with pytest.raises(TunebenchError, match=f"does not train.*{verbalizer}.*learned.*kpt"):
        method.check(fresh_backbone("tiny-llama", CPU), hp)


@pytest.mark.parametrize("backbone", ["roberta-base", "smollm2-135m"])
@pytest.mark.parametrize(
    "name, variant", [("lora", {"head": "lm"}), ("prompt-tuning", {}), ("prompt-finetune", {})]
)
@pytest.mark.parametrize("verbalizer", ["proto", "soft"])
def test_verbalizer_formula_holds_at_paper_scale(name, variant, verbalizer, backbone):
    method = get_method(name)
    variant = {**variant, "verbalizer": verbalizer}
    b = meta_backbone(backbone)
    expected = expected_params(
        name, Arch.of(b.model.config, b.kind, SST2), method.hyperparameters(variant)
    )
    counted = count_method_params(backbone, method, SST2, variant)
    assert counted["trainable"] == expected and counted["label"].endswith("+" + verbalizer)


def test_kpt_cannot_be_counted_without_its_search():
    with pytest.raises(TunebenchError, match="kpt needs its word lists.*search"):
        count_method_params("smollm2-135m", get_method("zero-shot"), SST2, {"verbalizer": "kpt"})


# --- in bf16 (autocast over the trunk, fp32 master weights) ----------------------------


def _first_runnable(name: str) -> str:
    return next(b for b in TINY if b not in contract(name).refused_on)


BF16_CELLS = [
    pytest.param(name, v, _first_runnable(name), id=f"{_id(name, v)}-bf16")
    for name, method in REGISTRY.items()
    for v in variants(method)
] + [
    pytest.param(name, v, "tiny-llama", id=f"{_id(name, v)}-bf16")
    for name, v in VERBALIZER_VARIANTS
]


@pytest.mark.parametrize("name, variant, backbone", BF16_CELLS)
def test_in_bf16_training_lowers_the_loss_counts_and_frozen_weights_unchanged(
    name, variant, backbone
):
    """The contract again with precision=bf16, one backbone per method (the cheapest that
    serves it): same trainable count, loss goes down, frozen weights bitwise unchanged, and
    the weights stay fp32 (autocast computes in bf16, the master weights do not change type)."""
    method = get_method(name)
    with precision.using("bf16"):
        model, b, hp = build(name, variant, backbone)
        assert model.precision == "bf16"
        expected = expected_params(name, Arch.of(b.model.config, b.kind, SST2), hp)
        assert count(model.parameters()) == expected
        if not method.trains:
            scores = evaluate(model, SST2, DEV_SPLIT, TRAIN_SPLIT, SEED).logits
            assert scores.dtype == "float32" and (scores == scores).all()
            return
        r = run(name, variant, backbone)
    ratio = max(contract(name).loss_ratio, VERBALIZER_LOSS_RATIO.get(variant.get("verbalizer"), 0))
    assert r.loss_after < ratio * r.loss_before, (
        f"{name} on {backbone} in bf16: train loss {r.loss_before:.4f} -> {r.loss_after:.4f}"
    )
    moved = {n for n in r.before if not torch.equal(r.before[n], r.after[n])}
    assert not sorted(moved - r.trainable), "frozen parameters changed in bf16"
    assert all(t.dtype == torch.float32 for t in r.after.values() if t.is_floating_point())


def test_bf16_autocast_changes_the_trunk_arithmetic_not_the_head():
    """bf16 features differ from fp32 ones (autocast really applies) by a bf16-sized error,
    and come back as fp32 for the head."""
    model, _, _ = build("zero-shot", {}, "tiny-llama")
    items = data.encode_eval(model, DEV_SPLIT, TRAIN_SPLIT, SEED)
    batch = data.collate(items, DEV_SPLIT, model.pad_id)
    with torch.no_grad():
        fp32 = model.features(batch)
        model.precision = "bf16"
        bf16 = model.features(batch)
    assert bf16.dtype == torch.float32 and not torch.equal(fp32, bf16)
    assert torch.allclose(fp32, bf16, atol=0.1 * fp32.abs().max().item())
