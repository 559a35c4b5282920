"""Predicted peak memory of one training step, from a backbone's config alone (no weights).

The method's model is built on the meta device (as ``tunebench params`` does), its tensors
turned into fake tensors (``torch._subclasses.FakeTensorMode``: shapes and dtypes, no data),
and one training step is run the way the harness runs it (``bench.engine.train``): a warm-up
step so the optimizer state exists, then, under a tracker, forward, loss, backward, gradient
clipping, fused AdamW step, ``zero_grad(set_to_none=True)``. Methods that do not train get one
``no_grad`` forward of a batch (as the runner measures them).

The accounting is the run's own CPU tracker's (``bench.engine.measure.peak_memory``): the
bytes of what lives across steps (parameters, buffers, optimizer state; each storage once)
plus the peak of the storages the step allocates, op by op. The peak is split into weights
(parameters and buffers), gradients, optimizer state and activations (everything else live at
the peak: saved activations, temporaries, the batch). On CUDA each allocation is rounded up
to the caching allocator's 512-byte blocks, and cuBLAS's workspace is added (the allocator
holds it once the first matmul ran, so ``max_memory_allocated`` counts it).

``precision`` models autocast: ``fp32`` as is; ``bf16`` / ``fp16`` run the forward under
``torch.autocast`` (matmul outputs in the low precision), with fp32 master weights, gradients
and optimizer state, as the harness's ``precision`` setting does.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bench.core.errors import TunebenchError
from bench.engine.measure import unique_parameters
from bench.engine.prompts import PSEUDO
from bench.run.params import meta_backbone
from methods.base import Method
from tasks import Task

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("cpu", "cuda")
CUDA_BLOCK = 512  # the caching allocator rounds every allocation up to a multiple of this
# cuBLAS workspace from the caching allocator (PyTorch's default CUBLAS_WORKSPACE_CONFIG
# :4096:8 on Hopper and later, 4096 KiB x 2 + 16 KiB x 8 before); counted once per device.
CUBLAS_WORKSPACE = {"sm90+": 4096 * 1024 * 8, "older": 4096 * 1024 * 2 + 16 * 1024 * 8}
PARTS = ("weights", "gradients", "optimizer", "activations")


@dataclass(frozen=True)
class Estimate:
    """A predicted peak and its parts, in bytes (the parts add up to ``peak``)."""

    backbone: str
    method: str
    label: str
    batch_size: int
    max_length: int
    precision: str
    device: str
    trains: bool
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    peak: int

    def as_dict(self) -> dict:
        return asdict(self)


def estimate(
    backbone_name: str,
    method: Method,
    task: Task,
    overrides: dict | None = None,
    *,
    batch_size: int | None = None,
    max_length: int | None = None,
    precision: str | None = None,
    device: str = "cpu",
    batch: dict | None = None,
    cublas_workspace: int | None = None,
) -> Estimate:
    """The predicted peak of one training step (one forward for methods that do not train).

    ``batch`` (real tensors, as ``bench.engine.data.collate`` makes them) gives the exact
    shapes to use; without it a batch of ``batch_size`` sequences of ``max_length`` tokens is
    made up (every sequence full length: the worst case of a padded batch). ``precision``
    defaults to the run's ``precision`` setting where the method has one, else fp32.
    """
    hp = method.hyperparameters(overrides)
    precision = resolve_precision(precision or hp.get("precision", "fp32"), device)
    if device not in DEVICES:
        raise TunebenchError(f"--device {device!r}: choose one of {list(DEVICES)}")
    for name, value in (("batch size", batch_size), ("max length", max_length)):
        if value is not None and value < 1:
            raise TunebenchError(f"{name} {value}: must be at least 1")
    backbone = meta_backbone(backbone_name)
    method.check(backbone, hp)
    model = method.build(backbone, task, hp)
    batch_size = hp["batch_size"] if batch_size is None else batch_size
    max_length = model.encoder.r.max_length if max_length is None else max_length
    if batch is None:
        _check_length(backbone, max_length)
    else:  # its shapes (a frozen trunk's batch holds features, not ids)
        batch_size = len(batch["label"])
        max_length = batch["input_ids"].shape[1] if "input_ids" in batch else max_length
    fake = FakeTensorMode(allow_non_fake_inputs=False)
    _fake_tensors(model, fake)
    trainable = [p for p in unique_parameters(model.parameters()) if p.requires_grad]
    with fake, _attention_kernels(device):
        make = _batch_maker(model, batch, batch_size, max_length)
        if method.trains and trainable:
            parts = _training_step(model, trainable, make, PRECISIONS[precision], device)
        else:
            parts = _inference(model, make, PRECISIONS[precision], device)
    if device == "cuda":
        workspace = CUBLAS_WORKSPACE["sm90+"] if cublas_workspace is None else cublas_workspace
        parts["activations"] += workspace
    return Estimate(
        backbone=backbone_name,
        method=method.name,
        label=method.label(hp),
        batch_size=int(batch_size),
        max_length=int(max_length),
        precision=precision,
        device=device,
        trains=method.trains,
        trainable=sum(p.numel() for p in trainable) if method.trains else 0,
        **parts,
        peak=sum(parts.values()),
    )


def resolve_precision(precision: str, device: str) -> str:
    """fp32 | bf16 | fp16; ``auto`` (the run setting's default) is bf16 autocast on CUDA and
    fp32 on the CPU (the estimate does not know the CPU's bf16 support)."""
    if precision == "auto":
        return "bf16" if device == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise TunebenchError(f"precision {precision!r}: choose one of {list(PRECISIONS)} or auto")
    return precision


# --- the model and the batch as fake tensors ------------------------------------------------


def _fake_tensors(model: nn.Module, fake: FakeTensorMode) -> None:
    """Replace every parameter and buffer (built on meta) by a fake CPU tensor of the same
    shape and dtype; a tensor shared between modules (tied weights) stays shared."""
    memo: dict[int, torch.Tensor] = {}

    def fake_of(t: torch.Tensor, parameter: bool) -> torch.Tensor:
        if id(t) not in memo:
            with fake:
                new = torch.empty(t.shape, dtype=t.dtype)
            memo[id(t)] = nn.Parameter(new, requires_grad=t.requires_grad) if parameter else new
        return memo[id(t)]

    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                module._parameters[name] = fake_of(p, True)
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = fake_of(b, False)


def _check_length(backbone, length: int) -> None:
    config = backbone.model.config
    positions = getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 0)
    if positions and length > positions:
        raise TunebenchError(
            f"max length {length}: backbone {backbone.name} has {positions} positions; "
            f"use a max length of at most {positions}"
        )


def _batch_maker(model, batch: dict | None, batch_size: int, length: int):
    """A function that makes the step's batch (under the fake mode): the shapes of ``batch``
    when given, else made up."""
    if batch is None:
        return lambda: _made_up_batch(model, batch_size, length)
    shapes = {k: (v.shape, v.dtype) for k, v in batch.items()}
    return lambda: {k: torch.zeros(shape, dtype=dtype) for k, (shape, dtype) in shapes.items()}


def _made_up_batch(model, batch_size: int, length: int) -> dict:
    """A batch of full-length sequences shaped as the method's inputs: the answer slot(s) at
    the end, the template's pseudo-token slots ({p}) at the start."""
    prompt = model.encoder.r.prompt
    answers = max(1, prompt.template.count("{mask}")) if prompt is not None else 1
    pseudo = prompt.template.count(PSEUDO) if prompt is not None else 0
    if answers + pseudo > length:
        raise TunebenchError(
            f"max length {length}: the template needs {answers + pseudo} slots; use a longer one"
        )
    b = batch_size
    batch = {
        "input_ids": torch.zeros(b, length, dtype=torch.long),
        "attention_mask": torch.ones(b, length, dtype=torch.long),
        "position": torch.zeros(b, answers, dtype=torch.long)
        if answers > 1
        else torch.zeros(b, dtype=torch.long),
        "label": torch.zeros(b, dtype=torch.long),
        "score": torch.zeros(b),
    }
    if pseudo:
        batch["pseudo"] = torch.zeros(b, pseudo, dtype=torch.long)
    return batch


# --- CUDA's attention kernels ----------------------------------------------------------------


class _FusedAttention(torch.autograd.Function):
    """What CUDA's fused attention kernels hold (the fake tensors run CPU code, whose math
    path in training keeps the (B, heads, T, S) probabilities and their dropout mask):
    flash attention (fp16/bf16, no mask) or memory-efficient attention (otherwise) keep the
    output and an fp32 log-sum-exp per query, never the attention matrix. Efficient attention
    reads a boolean mask as an additive bias in the query's dtype, its last dim padded to 16.
    Backward: the three input gradients, plus fp32 row terms (and flash's fp32 dq
    accumulator)."""

    @staticmethod
    def forward(ctx, q, k, v, bias, flash: bool):
        b, h, t, _ = q.shape
        out = q.new_empty((*q.shape[:-1], v.shape[-1]))  # (B, heads, T, Dv)
        lse = q.new_empty((b, h, t if flash else -(-t // 32) * 32), dtype=torch.float32)
        ctx.flash = flash
        ctx.save_for_backward(q, k, v, out, lse, *(() if bias is None else (bias,)))
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v = ctx.saved_tensors[:3]
        b, h, t, d = q.shape
        rows = q.new_empty((b, h, -(-t // 128) * 128 if ctx.flash else t), dtype=torch.float32)
        accum = (
            q.new_empty((b, h, -(-t // 128) * 128, d), dtype=torch.float32) if ctx.flash else None
        )
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        del rows, accum
        return dq, dk, dv, None, None


def _cuda_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
               enable_gqa=False):  # fmt: skip
    """``scaled_dot_product_attention`` as CUDA runs it, for memory only (no values)."""
    flash = attn_mask is None and query.dtype in (torch.float16, torch.bfloat16)
    bias = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            *lead, s = attn_mask.shape
            bias = query.new_empty((*lead, -(-s // 16) * 16))
        else:
            bias = attn_mask
    return _FusedAttention.apply(query, key, value, bias, flash)


@contextlib.contextmanager
def _attention_kernels(device: str):
    """On CUDA, attention as CUDA's fused kernels hold memory; on the CPU, as it runs."""
    if device != "cuda":
        yield
        return
    original = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _cuda_sdpa
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = original


# --- one step under the tracker -------------------------------------------------------------


def _autocast(dtype, device: str):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=dtype)  # fake tensors live on the CPU


def _features_batch(model, make) -> dict:
    """A frozen trunk's training step reads cached features (B, H) instead of running it."""
    batch = make()
    if model.trunk_frozen and "features" not in batch:
        hidden = model.body.config.hidden_size
        shape = (*batch["position"].shape, hidden)
        batch = {k: v for k, v in batch.items() if k in ("label", "score")}
        batch["features"] = torch.zeros(shape)
    return batch


def _training_step(model, params, make, dtype, device) -> dict:
    opt = torch.optim.AdamW([{"params": params}], lr=1e-5, fused=True)
    model.train()

    def step(tracker: _Tracker | None) -> None:
        batch = _features_batch(model, make)
        with _autocast(dtype, device):
            logits = model(batch)
        loss = model.loss(logits.float(), batch)
        loss.backward()
        if tracker is not None:  # which of the step's storages are gradients
            tracker.mark_gradients(p.grad for p in params if p.grad is not None)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    # Warm-up, as the run's probe comes after a first step: one optimizer step on zero
    # gradients creates the optimizer state (no forward/backward needed for that).
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)
    state = [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)]
    return _tracked(model, state, step, device)


def _inference(model, make, dtype, device) -> dict:
    model.eval()

    def step(tracker: _Tracker) -> None:
        batch = make()
        with torch.no_grad(), _autocast(dtype, device):
            model(batch)

    return _tracked(model, [], step, device)


def _tracked(model, state: list, step, device: str) -> dict:
    """Static bytes (what lives across steps) and the step's peak, split into parts."""
    size = _rounded if device == "cuda" else _nbytes
    weights = {_key(t): size(t) for t in (*model.parameters(), *model.buffers())}
    optimizer = {_key(t): size(t) for t in state}
    optimizer = {k: v for k, v in optimizer.items() if k not in weights}
    tracker = _Tracker(set(weights) | set(optimizer), size)
    with tracker:
        step(tracker)
    gradients = sum(n for serial, n in tracker.at_peak.items() if serial in tracker.gradients)
    return {
        "weights": sum(weights.values()),
        "gradients": gradients,
        "optimizer": sum(optimizer.values()),
        "activations": tracker.peak - gradients,
    }


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def _nbytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()


def _rounded(t: torch.Tensor) -> int:
    n = t.untyped_storage().nbytes()
    return -(-n // CUDA_BLOCK) * CUDA_BLOCK


class _Tracker(TorchDispatchMode):
    """Live bytes of the storages created under it, their peak and what was live then.
    Storages get serial numbers (a freed storage's address may be reused by the next one)."""

    def __init__(self, known: set[int], size):
        super().__init__()
        self.known, self.size = known, size
        self.live: dict[int, tuple[int, int]] = {}  # storage key -> (serial, bytes)
        self.current = self.peak = self.serials = 0
        self.at_peak: dict[int, int] = {}  # serial -> bytes, when the peak was reached
        self.gradients: set[int] = set()  # serials

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            key = st._cdata
            if key in self.known or key in self.live or st.nbytes() == 0:
                continue
            self.serials += 1
            self.live[key] = (self.serials, self.size(t))
            self.current += self.live[key][1]
            if self.current > self.peak:
                self.peak, self.at_peak = self.current, dict(self.live.values())
            weakref.finalize(st, self._free, key)
        return out

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, (0, 0))[1]

    def mark_gradients(self, grads) -> None:
        self.gradients |= {self.live[_key(g)][0] for g in grads if _key(g) in self.live}


# --- sizes, budgets and the predictions file ------------------------------------------------

_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}  # fmt: skip
SCHEMA = "tunebench.predicted-memory/1"


def parse_size(text: str) -> int:
    """``24GiB``, ``80 GB``, ``512MiB`` or a number of bytes -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise TunebenchError(
            f"device memory {text!r}: expected a size such as 24GiB, 80GB or 16384MiB"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.1f} MiB"


def fits(e: Estimate, budget: int) -> str | None:
    """None when the predicted peak fits in ``budget`` bytes; else why not and what to do."""
    if e.peak <= budget:
        return None
    fixes = []
    if e.trains and e.batch_size > 1:
        fixes.append(
            f"a smaller batch (batch_size={max(1, e.batch_size // 2)} with "
            f"grad_accum=2 keeps the effective batch)"
        )
    if e.precision == "fp32":
        fixes.append("bf16 autocast (precision=bf16)")
    fixes.append("a partial method (lora, bitfit) or a device with more memory")
    return (
        f"{e.backbone} x {e.label} at batch {e.batch_size}, length {e.max_length}, "
        f"{e.precision}: predicted peak {format_bytes(e.peak)} > {format_bytes(budget)} of "
        f"device memory; use {', or '.join(fixes)}"
    )


def predictions_document(estimates: list[Estimate]) -> dict:
    """The predictions as the report reads them (``bench/report/predicted_memory.json``)."""
    return {
        "schema": SCHEMA,
        "how": "predicted by `tunebench memory` (bench/run/memory.py) from the backbone's "
        "config alone: one training step on fake tensors after a warm-up step, fused AdamW, "
        "every sequence at full length; untrained methods: one no_grad forward",
        "estimates": [e.as_dict() for e in estimates],
    }
