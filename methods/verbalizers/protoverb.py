"""ProtoVerb (Cui et al. 2022): class prototypes in the answer-position hidden space.

The hidden state at the answer position, ``h`` (B, H), is projected by a learned linear map to
a small space (``proto_dim``), ``v = normalize(W h + b)``; each class has a learned prototype
``p_c`` (unit-normalised when compared). Similarity is cosine over a temperature,
``s(v, p) = cos(v, p) / proto_temp``. Trained with ProtoVerb's two contrastive losses:

- instance-prototype: ``-log softmax_c(s(v_i, p_c))[y_i]`` (cross-entropy over prototypes);
- instance-instance: for each example, the examples of its class in the batch against all
  others, ``-mean_{j: y_j = y_i, j != i} log( exp s(v_i, v_j) / sum_{k != i} exp s(v_i, v_k) )``.

Prediction: the prototype similarities alone (``proto_mix=0``: the class scores are
``s(v, p_c)``, so the trainer's cross-entropy on them *is* the instance-prototype loss and the
auxiliary loss adds the instance-instance one), or combined with the manual verbalizer,
``log_softmax(s) + proto_mix * log_softmax(manual)`` (then the auxiliary loss holds both
contrastive losses and the cross-entropy is on the combined scores). The projection and the
prototypes are under ``head.learned`` and start at random, so they train at their own rate
``proto_lr``: a body fine-tuned at 1e-5 would leave them where they started.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.engine.model import VerbalizerHead

DEFAULTS = {
    "proto_dim": 128,  # the projection's size
    "proto_temp": 0.1,  # cosine similarity / temperature
    "proto_mix": 0.0,  # weight of the manual verbalizer's log-probabilities (0: prototypes alone)
    "proto_lr": 1e-2,  # the projection's and prototypes' learning rate (0: the method's)
}


class ProtoHead(nn.Module):
    def __init__(self, model: nn.Module, word_ids, classes: int, dim: int, temp: float, mix: float):
        super().__init__()
        weight = model.get_input_embeddings().weight
        hidden, kw = weight.shape[1], {"device": weight.device}
        self.learned = nn.Module()
        self.learned.proj = nn.Linear(hidden, dim, **kw)
        self.learned.prototypes = nn.Parameter(torch.randn(classes, dim, **kw))
        self.manual = VerbalizerHead(model, word_ids) if mix else None
        self.temp, self.mix = temp, mix
        self._seen: torch.Tensor | None = None  # unit features of the last forward, (B, D)

    def embed(self, h: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, D), unit length
        return F.normalize(self.learned.proj(h.to(self.learned.proj.weight.dtype)), dim=-1)

    def similarity(self, v: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C)
        return v @ F.normalize(self.learned.prototypes, dim=-1).T / self.temp

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        v = self.embed(h)
        self._seen = v
        scores = self.similarity(v)
        if self.manual is not None:
            scores = scores.log_softmax(-1) + self.mix * self.manual(h).float().log_softmax(-1)
        return scores

    def auxiliary_loss(self, labels: torch.Tensor) -> torch.Tensor:
        """The contrastive losses not already in the trainer's cross-entropy (see above),
        on the features the last forward pass saw."""
        v, self._seen = self._seen, None  # read once: the graph is not kept past the step
        loss = instance_instance_loss(v, labels, self.temp)
        if self.manual is not None:
            loss = loss + F.cross_entropy(self.similarity(v), labels)
        return loss

    def describe(self) -> dict:
        return {
            "name": "proto",
            "dim": self.learned.proj.out_features,
            "temp": self.temp,
            "mix": self.mix,
        }


def instance_instance_loss(v: torch.Tensor, labels: torch.Tensor, temp: float) -> torch.Tensor:
    """Supervised contrastive loss over a batch of unit features ``v`` (B, D): each anchor
    against its same-class examples, the rest as negatives; 0 when no anchor has a partner."""
    sim = v @ v.T / temp  # (B, B)
    self_pair = torch.eye(len(v), dtype=torch.bool, device=v.device)
    log_p = sim.masked_fill(self_pair, float("-inf")).log_softmax(-1)  # over k != i
    positive = (labels[:, None] == labels[None, :]) & ~self_pair
    count = positive.sum(1)
    has = count > 0
    if not has.any():
        return sim.new_zeros(())
    per_anchor = -(log_p.masked_fill(~positive, 0.0).sum(1)[has] / count[has])
    return per_anchor.mean()
