"""Soft-prompt adapters: the pseudo-token methods as implementations of the adapter protocol
(``bench.engine.model.NoAdapter``): ``(embeds (B, T, H), mask (B, T), batch) -> (embeds, mask,
extra body kwargs, shift)``.

- ``PromptVectors`` prepends N trainable vectors to the input embeddings (prompt tuning).
- ``PseudoTokens`` puts a prompt encoder's N vectors at the template's pseudo-token slots
  (P-tuning); nothing is prepended.
- ``KVPrefix`` gives every layer's self-attention N extra keys and values before the sequence
  (prefix-tuning, P-Tuning v2), as a pre-filled transformers ``DynamicCache``; the attention
  mask is extended to cover them, and nothing is prepended to the sequence.

Each adapter also hands the body explicit ``position_ids``: every attended token's position
counts the attended tokens before it, virtual ones included. That is how transformers numbers
a right-padded batch after a prefix or prompt, and it stays the same when the padding is on the
left, so neither the padding side nor the batch a sequence is in changes its prediction.
"""

from __future__ import annotations

import inspect

import torch
from peft import PrefixTuningConfig, PromptEncoderConfig
from peft.tuners.p_tuning import PromptEncoder
from peft.tuners.prefix_tuning import PrefixEncoder
from torch import nn
from transformers import DynamicCache

# Models that number positions from padding_idx + 1 (fairseq's convention, kept by RoBERTa).
_POSITIONS_AFTER_PAD = ("roberta", "xlm-roberta", "camembert")


def position_offset(config) -> int:
    """The position id of a sequence's first token."""
    return config.pad_token_id + 1 if config.model_type in _POSITIONS_AFTER_PAD else 0


def position_ids(mask: torch.Tensor, offset: int) -> torch.Tensor:
    """(B, T) mask -> (B, T) positions: attended tokens before each one, plus ``offset``.
    Padding gets a valid dummy position; the mask hides it."""
    return (mask.cumsum(-1) - 1).clamp(min=0) + offset


class PromptVectors(nn.Module):
    """Prompt tuning (Lester et al. 2021): N independent trainable vectors before the input.

    PEFT's ``PromptEmbedding`` is the same (N, H) table; the method initialises the vectors
    itself (PEFT's text initialisation loads a tokenizer by name and keeps special tokens).
    """

    def __init__(self, init: torch.Tensor, offset: int):
        super().__init__()
        self.vectors = nn.Parameter(init.detach().clone())  # (N, H)
        self.offset = offset

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, batch: dict):
        b, n = embeds.shape[0], self.vectors.shape[0]
        prompt = self.vectors.to(embeds.dtype).expand(b, -1, -1)  # (B, N, H)
        embeds = torch.cat([prompt, embeds], dim=1)  # (B, N + T, H)
        mask = torch.cat([mask.new_ones(b, n), mask], dim=1)  # (B, N + T)
        return embeds, mask, {"position_ids": position_ids(mask, self.offset)}, n


class PseudoTokens(nn.Module):
    """P-tuning (Liu et al. 2021): the vectors at the template's N pseudo-token slots come from
    a prompt encoder over N trainable embeddings (PEFT's ``PromptEncoder``: a bidirectional
    LSTM then an MLP, as in the paper, or an MLP), so they are not independent.

    The slots are ``batch["pseudo"]`` (B, N), from ``{p}`` in the template; the placeholder
    ids' embeddings there are replaced.
    """

    def __init__(self, n: int, hidden: int, offset: int, encoder: str = "lstm", width: int = 0):
        super().__init__()
        config = PromptEncoderConfig(
            num_virtual_tokens=n,
            token_dim=hidden,
            num_transformer_submodules=1,
            encoder_reparameterization_type=encoder.upper(),
            # The paper's LSTM has H/2 units each way, so its output is H wide.
            encoder_hidden_size=width or (hidden // 2 if encoder == "lstm" else hidden),
        )
        self.encoder = PromptEncoder(config)
        self.register_buffer("indices", torch.arange(n), persistent=False)
        self.offset = offset

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, batch: dict):
        slots = batch.get("pseudo")  # (B, N)
        n = self.indices.numel()
        if slots is None or slots.shape[1] != n:
            got = 0 if slots is None else slots.shape[1]
            raise ValueError(f"the template has {got} pseudo-token slots; this encoder makes {n}")
        vectors = self.encoder(self.indices[None]).to(embeds.dtype)  # (1, N, H)
        b, h = embeds.shape[0], embeds.shape[-1]
        embeds = embeds.scatter(1, slots[..., None].expand(b, n, h), vectors.expand(b, -1, -1))
        return embeds, mask, {"position_ids": position_ids(mask, self.offset)}, 0


def kv_shape(config) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of a transformer config (GQA: fewer kv heads)."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


class KVPrefix(nn.Module):
    """Prefix-tuning (Li & Liang 2021) and P-Tuning v2 (Liu et al. 2022): N trainable keys and
    values before the sequence in every layer's self-attention, made by PEFT's ``PrefixEncoder``:
    through Li & Liang's reparameterising MLP (embedding (N, D) -> D -> ``mlp`` -> L*2*D) when
    ``mlp`` > 0, else the raw (N, L*2*D) table; D = kv heads * head size.

    The prefix reaches the body as a ``DynamicCache`` pre-filled per layer (a new one each
    forward: attention appends to it), under ``cache_kwarg`` (``cache`` in transformers 5
    BERT, RoBERTa and Llama; ``past_key_values`` before).
    """

    def __init__(self, n: int, config, offset: int, mlp: int = 0, cache_kwarg: str = "cache"):
        super().__init__()
        layers, kv_heads, head_dim = kv_shape(config)
        self.shape = (n, 2 * layers, kv_heads, head_dim)
        peft_config = PrefixTuningConfig(
            num_virtual_tokens=n,
            token_dim=kv_heads * head_dim,
            num_layers=layers,
            encoder_hidden_size=mlp or kv_heads * head_dim,
            prefix_projection=mlp > 0,
        )
        self.encoder = PrefixEncoder(peft_config)
        self.register_buffer("indices", torch.arange(n), persistent=False)
        self.offset, self.cache_kwarg = offset, cache_kwarg

    @torch.no_grad()
    def start_from_text(self, body: nn.Module, ids: list[int]) -> None:
        """Set the prefix (no MLP) to the keys and values ``body`` computes for N token ids:
        training starts as if that text came before every input, instead of from random
        vectors that scramble a small model's attention (Li & Liang's initialisation with real
        words' activations, their fix for low-data settings)."""
        n = self.shape[0]
        if self.encoder.prefix_projection or len(ids) != n:
            raise ValueError(f"a text start needs a prefix without MLP and {n} token ids")
        cache = DynamicCache()
        body(input_ids=torch.tensor([ids], device=self.indices.device), **{self.cache_kwarg: cache})
        kv = torch.stack([t[0] for layer in cache.layers for t in (layer.keys, layer.values)])
        self.encoder.embedding.weight.copy_(kv.permute(2, 0, 1, 3).reshape(n, -1))  # (N, 2L*D)

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, batch: dict):
        b, n = embeds.shape[0], self.shape[0]
        kv = self.encoder(self.indices[None]).to(embeds.dtype)  # (1, N, L*2*D)
        kv = kv.view(self.shape).permute(1, 2, 0, 3)  # (2L, kv heads, N, head size)
        kv = kv[:, None].expand(-1, b, -1, -1, -1)  # (2L, B, kv heads, N, head size)
        cache = DynamicCache(ddp_cache_data=[(kv[i], kv[i + 1]) for i in range(0, len(kv), 2)])
        full = torch.cat([mask.new_ones(b, n), mask], dim=1)  # (B, N + T): keys and values
        extra = {self.cache_kwarg: cache, "position_ids": position_ids(full, self.offset)[:, n:]}
        return embeds, full, extra, 0


def cache_kwarg(body: nn.Module) -> str | None:
    """The name under which ``body.forward`` takes a key/value cache, if it takes one."""
    params = inspect.signature(body.forward).parameters
    return next((k for k in ("cache", "past_key_values") if k in params), None)
