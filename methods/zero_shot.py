"""Zero-shot prompting: the manual template and verbalizer, no training. Optional contextual
calibration (Zhao et al. 2021): divide the label-word probabilities by those the model gives
to content-free inputs ("N/A", "", the mask token)."""

import numpy as np
import torch
from torch import nn

from methods.base import Method, set_trainable, verbalizer_model
from tasks import Example


class CalibratedHead(nn.Module):
    """log p(y|x) - log p(y|content-free), renormalised by the softmax downstream."""

    def __init__(self, head: nn.Module, log_prior: torch.Tensor):
        super().__init__()
        self.inner = head
        self.register_buffer("log_prior", log_prior, persistent=False)  # (C,)

    def forward(self, h):
        return self.inner(h).log_softmax(-1) - self.log_prior

    def describe(self):  # the record keeps what the calibrated verbalizer used
        describe = getattr(self.inner, "describe", None)
        return {**describe(), "content_free_calibration": True} if describe else None


DEMO_DRAWS = 4  # demonstration sets per content-free input, for a method that shows them


def content_free_log_prior(model, task, pool=(), seed: int = 0) -> torch.Tensor:
    """Mean label-word distribution over content-free inputs, in log space, (C,). For a model
    that shows demonstrations, each content-free input is shown with them, as Zhao et al.
    calibrate (the same prompt, "N/A" as the test input): ``DEMO_DRAWS`` sets drawn from
    ``pool`` the way test examples draw theirs (generator ``[seed, 1, draw]``), averaged."""
    from bench.engine.data import collate

    texts = ["N/A", "", model.encoder.tokens.tok.mask_token or "N/A"]
    exs = [Example(text_a=t, text_b=t if task.is_pair else None, label=0) for t in texts]
    enc = model.encoder
    draws = DEMO_DRAWS if enc.r.demos_per_label and pool else 1
    items, shown = [], []
    for d in range(draws):
        rng = np.random.default_rng([seed, 1, d])
        items += [enc.encode(e, enc.choose_demos(e, list(pool), rng) if pool else ()) for e in exs]
        shown += exs
    batch = collate(items, shown, model.pad_id)
    model.eval()
    with torch.no_grad():
        probs = model(batch).softmax(-1).mean(0)
    return probs.log()


def calibrated(model, task, hp):
    """Contextual calibration when ``hp["calibrate"]``: the prior a search found on the
    cell's data (with demonstrations; ``hp["found"]``), else content-free inputs alone."""
    if hp.get("calibrate"):
        found = (hp.get("found") or {}).get("content_free_log_prior")
        prior = (
            torch.tensor(found, device=next(model.head.buffers(), torch.empty(0)).device)
            if found is not None
            else content_free_log_prior(model, task)
        )
        model.head = CalibratedHead(model.head, prior.float())
    return model


def build(backbone, task, hp):
    model = calibrated(verbalizer_model(backbone, task, hp), task, hp)
    set_trainable(model, lambda name, p: False, verbalizer=False)
    return model


def display(hp):
    return "zero-shot+cc" if hp.get("calibrate") else "zero-shot"


METHOD = Method(
    name="zero-shot",
    family="prompt",
    head="lm",
    build=build,
    trains=False,
    summary="manual template + verbalizer, no training (optional contextual calibration)",
    defaults={"calibrate": False},
    choices={"calibrate": (False, True)},
    display=display,
)
