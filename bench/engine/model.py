"""One model shape for every method: input adapter -> backbone body -> read one position ->
head. Methods differ only in what they build into these slots and which parameters they
leave trainable; the trainer and runner never look at a method's name.

- ``adapter`` changes the input embeddings or the attention cache (soft prompts, prefixes);
  the default changes nothing. It returns how many positions it prepended, so the position
  the head reads moves with it.
- ``pooling`` is what a classifier head reads: "cls" / "last" (the one position the encoder
  put in ``position``: the first token, or the last non-pad token) or "mean" (the mean of
  the attended tokens' states, virtual tokens of a prepended prompt included); ``None`` for
  the LM head, which reads the answer position.
- ``head`` maps the hidden state at the read position (B, H) to class scores (B, C): a
  ``ClassifierHead`` or a ``VerbalizerHead`` (the LM head restricted to label-word rows). A
  template with M answer slots gives it (B, M, H) (PTR's ``RuleHead``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones.catalog import Backbone
from bench.engine import compute, precision
from bench.engine.prompts import Encoder


class NoAdapter(nn.Module):
    """The adapter protocol, changing nothing.

    ``adapter(embeds (B, T, H), mask (B, T), batch) -> (embeds (B, T', H), mask (B, T'),
    extra keyword arguments for the body (e.g. ``past_key_values``), shift)`` where ``shift``
    is the number of positions prepended (the read position moves by it). ``batch`` gives
    access to ``input_ids`` and ``position`` for adapters that replace placeholder tokens.
    """

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, batch: dict):
        return embeds, mask, {}, 0


class ClassifierHead(nn.Module):
    """RoBERTa's sequence-classification head on one hidden state: dense-tanh-linear."""

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, C)
        return self.out(self.dropout(torch.tanh(self.dense(self.dropout(h)))))

    @staticmethod
    def size(hidden: int, num_labels: int) -> int:
        return hidden * hidden + hidden + hidden * num_labels + num_labels


class _RobertaTransform(nn.Module):
    def __init__(self, lm_head: nn.Module):
        super().__init__()
        self.dense, self.layer_norm = lm_head.dense, lm_head.layer_norm

    def forward(self, h):
        return self.layer_norm(F.gelu(self.dense(h)))


def lm_transform(model: nn.Module) -> nn.Module:
    """What the LM head does to a hidden state before the vocabulary projection."""
    kind = model.config.model_type
    if kind == "bert":
        return model.cls.predictions.transform
    if kind in ("roberta", "xlm-roberta", "camembert"):
        return _RobertaTransform(model.lm_head)
    if kind in ("llama", "gpt2", "mistral", "qwen2", "qwen3", "smollm3", "gemma", "opt"):
        return nn.Identity()  # the body's final norm is already applied
    raise NotImplementedError(f"no LM-head transform known for model type {kind!r}")


class VerbalizerHead(nn.Module):
    """The LM head read at one position and only for the label words' rows: (B, H) -> (B, C).

    ``word_ids`` is (C, W): W label words per class (one for a manual verbalizer), their
    scores averaged in log-probability space over the label words only. The projection costs
    C*W*H per example instead of V*H (SmolLM2's 49,152-row head is a fifth of the model).
    """

    def __init__(self, model: nn.Module, word_ids: Sequence[Sequence[int]] | Sequence[int]):
        super().__init__()
        self.transform = lm_transform(model)
        decoder = model.get_output_embeddings()
        self.weight = decoder.weight  # shared with the backbone (tied to the input embeddings)
        self.bias = decoder.bias
        ids = torch.tensor([[w] if isinstance(w, int) else list(w) for w in word_ids])
        self.register_buffer("word_ids", ids, persistent=False)  # (C, W)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.transform(h)  # (B, H)
        rows = self.weight[self.word_ids]  # (C, W, H)
        logits = torch.einsum("bh,cwh->bcw", h, rows)
        if self.bias is not None:
            logits = logits + self.bias[self.word_ids]
        return logits.mean(-1) if logits.shape[-1] == 1 else logits.logsumexp(-1)


class TaskModel(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        encoder: Encoder,
        head: nn.Module,
        adapter: nn.Module | None = None,
        regression: bool = False,
        pooling: str | None = None,
    ):
        super().__init__()
        self.body = backbone.model.base_model
        if getattr(self.body, "pooler", None) is not None:
            # An encoder's pooler (BERT's dense-tanh on [CLS]) is never read: heads read one
            # token's hidden state. Kept, it would count as trainable yet never get a gradient.
            self.body.pooler = None
        self.head = head
        self.adapter = adapter if adapter is not None else NoAdapter()
        self.encoder = encoder
        self.regression = regression
        self.pooling = pooling
        self.backbone_name = backbone.name
        tok = backbone.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        backbone.model.config.use_cache = False
        self.precision = precision.current()  # resolved: fp32 | bf16 | fp16 (the runner sets it)
        self._flop_parameters: int | None = None

    @property
    def flop_parameters(self) -> int:
        """N of the FLOP estimate (``bench.engine.compute``): the body's matmul parameters."""
        if self._flop_parameters is None:
            self._flop_parameters = compute.matmul_parameters(self.body)
        return self._flop_parameters

    def trunk_parameters(self):
        """Everything before the head: if none of it trains, its outputs can be cached."""
        yield from self.body.parameters()
        yield from self.adapter.parameters()

    @property
    def trunk_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.trunk_parameters())

    def features(self, batch: dict) -> torch.Tensor:
        """The hidden state the head reads, (B, H); (B, M, H) where each sequence has M read
        positions (``position`` (B, M): several answers, PTR's sub-prompts); with ``pooling ==
        "mean"`` the mean over the sequence's real tokens instead. The adapter and the body run
        under the model's precision (autocast); what the head reads is fp32."""
        batch = self.on_device(batch)  # callers may hand a CPU batch (frozen-feature passes)
        with precision.autocast(self.precision, batch["input_ids"].device):
            embeds = self.body.get_input_embeddings()(batch["input_ids"])  # (B, T, H)
            embeds, mask, extra, shift = self.adapter(embeds, batch["attention_mask"], batch)
            hidden = self.body(inputs_embeds=embeds, attention_mask=mask, **extra).last_hidden_state
        backward = torch.is_grad_enabled() and (
            embeds.requires_grad or any(p.requires_grad for p in self.trunk_parameters())
        )
        compute.account(self, batch["attention_mask"], shift, backward)
        if self.pooling == "mean":
            # A key/value prefix extends the mask (B, N + T) but not the states (B, T).
            weights = mask[:, -hidden.shape[1] :, None].float()  # (B, T, 1)
            return (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1)  # in fp32
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        position = batch["position"] + shift  # (B,) or (B, M)
        if position.dim() == 2:
            rows = rows[:, None]
        return hidden[rows, position].float()  # fp32 whatever the autocast

    def forward(self, batch: dict) -> torch.Tensor:  # class scores, (B, C)
        batch = self.on_device(batch)
        feats = batch["features"] if "features" in batch else self.features(batch)
        return self.head(feats)

    def on_device(self, batch: dict) -> dict:
        device = next(self.head.parameters(), self.body.get_input_embeddings().weight).device
        return {k: v.to(device) for k, v in batch.items()}

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.regression:  # STS-B: soft targets (1 - s/5, s/5) on the two label words
            s = (batch["score"].to(logits.device) / 5.0).clamp(0, 1)
            return F.cross_entropy(logits, torch.stack([1 - s, s], dim=-1))
        labels = batch["label"].to(logits.device)
        loss = F.cross_entropy(logits, labels)
        auxiliary = getattr(self.head, "auxiliary_loss", None)  # e.g. ProtoVerb's contrastive
        return loss if auxiliary is None else loss + auxiliary(labels)
