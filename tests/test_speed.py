"""Issue 13: precision, token and FLOP accounting, and the shared cache of frozen features.

Tiny backbones on the CPU; every figure below is derived here from the inputs (token counts
from the encoded examples, FLOPs from the parameter count), not pinned.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path

import pytest
import torch

from bench.backbones.cache import fresh_backbone
from bench.core.errors import TunebenchError
from bench.engine import compute, data, precision
from bench.engine.train import evaluate
from bench.run.runner import Cell, run_cell
from methods import get_method
from tasks import Example, get_task

CPU = torch.device("cpu")
SST2 = get_task("SST-2")
SEED = 13
WORDS = "a fine film with a dull middle and a great end".split()
ROWS = [
    Example(" ".join(WORDS[: 3 + (i * 7) % 8]), i % 2) for i in range(24)
]  # lengths vary, so batches pad

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture
def cache_dir(tmp_path):
    """The process's feature cache pointed at an empty folder, and put back afterwards."""
    data.FEATURES.clear()
    data.FEATURES.use_directory(tmp_path / "features")
    yield tmp_path / "features"
    data.FEATURES.use_directory(None)
    data.FEATURES.clear()


def zero_shot(backbone: str = "tiny-llama", **overrides):
    method = get_method("zero-shot")
    b = fresh_backbone(backbone, CPU)
    return method.build(b, SST2, method.hyperparameters(overrides))


# --- precision ----------------------------------------------------------------------------


def test_auto_is_bf16_exactly_where_the_cpu_has_fast_bf16(monkeypatch):
    for flags, expected in [
        ({"avx2", "avx512_bf16"}, "bf16"),
        ({"avx2", "amx_bf16", "amx_tile"}, "bf16"),
        ({"avx2", "avx512f"}, "fp32"),
        (set(), "fp32"),
    ]:
        monkeypatch.setattr(precision, "cpu_flags", lambda f=flags: frozenset(f))
        assert precision.resolve("auto", "cpu") == expected
    assert precision.resolve("fp32", "cpu") == "fp32"
    assert precision.resolve("bf16", "cpu") == "bf16"


def test_bad_precisions_are_one_line_errors_naming_the_fix():
    with pytest.raises(TunebenchError, match="precision=fp16 needs a CUDA device.*bf16 or fp32"):
        precision.resolve("fp16", "cpu")
    with pytest.raises(TunebenchError, match=r"precision='fp64'.*choose one of \['auto'"):
        get_method("lora").hyperparameters({"precision": "fp64"})


def test_cli_sets_precision_and_the_record_carries_the_resolved_one(data_root, tmp_path):
    from bench.cli.app import main as cli

    for choice in ("fp32", "bf16", "auto"):
        out = tmp_path / f"{choice}.json"
        argv = ["run", "--backbone", "tiny-roberta", "--task", "RTE", "--method", "zero-shot"]
        argv += ["--k", "4", "--set", f"precision={choice}", "--out", str(out)]
        assert cli(argv) == 0
        rec = json.loads(out.read_text())
        assert rec["config"]["hyperparameters"]["precision"] == choice
        assert rec["config"]["precision"] == precision.resolve(choice, "cpu")


# --- tokens and FLOPs ---------------------------------------------------------------------


def _expected_tokens(model, examples, pool, batch_size):
    """Non-pad and padded tokens of an evaluation pass, from the encoded inputs alone."""
    items = data.encode_eval(model, examples, pool, SEED)
    lengths = [len(e.ids) for e in items]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in data.eval_order(lengths, batch_size))
    return sum(lengths), padded


@pytest.mark.parametrize("choice", ["fp32", "bf16"])
def test_records_carry_precision_tokens_and_flops(choice, data_root):
    data.FEATURES.clear()
    overrides = {"steps": 4, "eval_every": 2, "precision": choice}
    rec = run_cell(Cell("tiny-roberta", "RTE", "lora", k=4), overrides, data_root, device=CPU)
    assert rec["status"] == "ok" and rec["config"]["precision"] == choice
    c = rec["compute"]
    model = zero_shot("tiny-roberta")  # for N: the body's matmul parameters, embeddings out
    n = compute.matmul_parameters(model.body)
    assert 0 < n < sum(p.numel() for p in model.body.parameters())
    lora = rec["params"]["method"]  # LoRA's A and B sit in the body's matmuls
    assert c["flop_parameters"] == n + lora
    test = c["test"]["test"]
    assert 0 < test["tokens"] <= test["padded_tokens"]
    assert test["flops"] == 2 * c["flop_parameters"] * test["padded_tokens"]
    train = c["train"]
    assert train["tokens"] > 0
    # a frozen trunk with trained LoRA matrices: forward 2N, activation gradients 2N, weight
    # gradients only for LoRA's matrices
    assert train["flops"] == (4 * c["flop_parameters"] + 2 * lora) * train["padded_tokens"]
    assert c["dev"]["tokens"] > 0 and c["total"]["flops"] >= test["flops"] + train["flops"]


def test_evaluation_tokens_are_the_encoded_inputs():
    model = zero_shot()
    tokens, padded = _expected_tokens(model, ROWS, ROWS[:4], 8)
    assert padded > tokens  # the rows differ in length
    meter = compute.Meter()
    data.FEATURES.clear()
    with compute.metering(meter), compute.phase("x"):
        evaluate(model, SST2, ROWS, ROWS[:4], SEED, batch_size=8)
    got = meter.get("x")
    assert (got.tokens, got.padded_tokens) == (tokens, padded)
    assert got.flops == 2 * model.flop_parameters * padded
    with compute.metering(meter), compute.phase("again"):  # served by the cache: no work
        evaluate(model, SST2, ROWS, ROWS[:4], SEED, batch_size=8)
    assert meter.get("again").tokens == 0


def test_a_trained_trunk_costs_six_n_per_token():
    from bench.engine.train import Hyper, train

    method = get_method("finetune")
    hp = method.hyperparameters({"steps": 2, "eval_every": 2, "batch_size": 4})
    model = method.build(fresh_backbone("tiny-roberta", CPU), SST2, hp)
    meter = compute.Meter()
    with compute.metering(meter):
        train(model, SST2, ROWS[:8], ROWS[8:12], Hyper.from_dict(hp), SEED)
    t = meter.get("train")
    assert t.padded_tokens > 0
    assert t.flops == 6 * model.flop_parameters * t.padded_tokens


def test_memory_is_measured_under_autocast():
    from bench.engine.measure import peak_memory

    model = zero_shot()
    model.precision = "bf16"
    batch = data.collate(data.encode_eval(model, ROWS[:8], ROWS, SEED), ROWS[:8], model.pad_id)
    seen = []

    def step():
        with torch.no_grad():
            seen.append(model(batch))

    m = peak_memory(step, [model], None, CPU)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert m["peak_bytes"] > m["static_bytes"] >= weights and seen[0].dtype == torch.float32


# --- the report ---------------------------------------------------------------------------


def test_the_report_never_averages_two_precisions(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from report_records import record, write_all

    from bench.report.aggregate import aggregate, load_records

    recs = []
    for s in (13, 21):
        for prec, score in (("fp32", 0.8), ("bf16", 0.6)):
            r = record("zero-shot", "SST-2", s, score, profile="cpu")
            r["config"] = {"precision": prec}
            recs.append(r)
            (tmp_path / prec).mkdir(exist_ok=True)
            write_all(tmp_path / prec, [r])
    agg = aggregate(load_records(tmp_path))
    got = sorted(
        (t.setting.precision, t.rows[0].cells[t.columns[0]].stats.mean) for t in agg.tables
    )
    assert got == [("bf16", 0.6), ("fp32", 0.8)]
    assert {t.setting.label for t in agg.tables} == {
        "profile cpu, K=16, bf16",
        "profile cpu, K=16, fp32",
    }


# --- the shared cache of frozen features --------------------------------------------------


def test_feature_key_is_what_determines_the_features():
    a, b = zero_shot(), zero_shot()
    items = data.encode_eval(a, ROWS, ROWS, SEED)
    key = data.feature_key(a, items)
    assert data.feature_key(b, items) == key  # another copy of the same weights
    assert data.feature_key(a, items[:-1]) != key  # other inputs
    b.precision = "bf16"
    assert data.feature_key(b, items) != key  # another precision
    with torch.no_grad():
        next(a.body.parameters()).add_(1e-3)
    assert data.feature_key(a, items) != key  # other weights (changed in place)
    assert data.feature_key(zero_shot("tiny-roberta"), items) != key  # another backbone


def test_same_scores_with_and_without_the_disk_cache(cache_dir):
    data.FEATURES.use_directory(None)
    plain = evaluate(zero_shot(), SST2, ROWS, ROWS[:4], SEED).logits
    data.FEATURES.clear()
    data.FEATURES.use_directory(cache_dir)
    first = evaluate(zero_shot(), SST2, ROWS, ROWS[:4], SEED).logits  # computes, writes
    assert len(list(cache_dir.rglob("*.safetensors"))) == 1
    data.FEATURES.clear()  # as a new process: memory empty, the disk entry there
    disk = data.FEATURES.disk_hits
    again = evaluate(zero_shot(), SST2, ROWS, ROWS[:4], SEED).logits
    assert data.FEATURES.disk_hits == disk + 1
    assert (plain == first).all() and (plain == again).all()


@pytest.mark.parametrize("damage", ["garbage", "flipped byte", "empty"])
def test_a_corrupt_entry_is_recomputed_never_trusted(cache_dir, damage):
    model = zero_shot()
    good = evaluate(model, SST2, ROWS, ROWS[:4], SEED).logits
    (path,) = cache_dir.rglob("*.safetensors")
    blob = bytearray(path.read_bytes())
    if damage == "garbage":
        blob = bytearray(b"not a safetensors file")
    elif damage == "flipped byte":
        blob[-3] ^= 0x40  # inside the tensor data: the file still parses
    else:
        blob = bytearray()
    path.write_bytes(bytes(blob))
    data.FEATURES.clear()
    rejected = data.FEATURES.rejected
    got = evaluate(zero_shot(), SST2, ROWS, ROWS[:4], SEED).logits
    assert data.FEATURES.rejected == rejected + 1
    assert (got == good).all()
    data.FEATURES.clear()
    hits = data.FEATURES.disk_hits
    evaluate(zero_shot(), SST2, ROWS, ROWS[:4], SEED)  # the entry was rewritten, whole
    assert data.FEATURES.disk_hits == hits + 1


def _worker(directory: str, out) -> None:
    """One sweep worker: a process of its own, with the cache folder shared."""
    data.FEATURES.clear()
    data.FEATURES.use_directory(directory)
    hits = data.FEATURES.disk_hits
    logits = evaluate(zero_shot(), SST2, ROWS, ROWS[:4], SEED).logits
    out.put({"disk_hits": data.FEATURES.disk_hits - hits, "logits": logits.tolist()})


def test_two_worker_processes_compute_an_entry_once(cache_dir):
    ctx = multiprocessing.get_context("fork")  # the test's imports carry over: fast to start
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(cache_dir), out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(r["disk_hits"] for r in results) == [0, 1]  # one computed, one loaded
    assert results[0]["logits"] == results[1]["logits"]
    assert len(list(cache_dir.rglob("*.safetensors"))) == 1


def test_a_profile_may_fix_the_precision(tmp_path):
    from bench.sweep.profile import load, plan

    path = tmp_path / "fixed.toml"
    path.write_text(
        'backbones = ["tiny-roberta"]\ntasks = ["RTE"]\nk = [4]\nseeds = [13]\n'
        '[search]\ntrials = 1\n[settings]\nprecision = "fp32"\n'
        '[[methods]]\nmethod = "zero-shot"\n[[methods]]\nmethod = "lora"\n'
        'settings = { precision = "bf16" }\n'
    )
    cells, _ = plan(load(str(path)), None)
    got = {c.method: get_method(c.method).hyperparameters(c.settings)["precision"] for c in cells}
    assert got == {"zero-shot": "fp32", "lora": "bf16"}


def test_fp16_training_goes_through_a_gradient_scaler(monkeypatch):
    """resolve() lends fp16 to CUDA only; the loop's scaler path is exercised here on the CPU
    (torch's CPU autocast runs fp16 too): every step is scaled, the weights stay fp32."""
    from bench.engine.train import Hyper, train

    updates = []

    class Counting(torch.amp.GradScaler):
        def update(self, *args, **kwargs):
            updates.append(self.get_scale())
            return super().update(*args, **kwargs)

    monkeypatch.setattr(torch.amp, "GradScaler", Counting)
    method = get_method("finetune")
    hp = method.hyperparameters({"steps": 4, "eval_every": 4, "batch_size": 4, "lr": 1e-3})
    model = method.build(fresh_backbone("tiny-roberta", CPU), SST2, hp)
    model.precision = "fp16"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train(model, SST2, ROWS[:8], ROWS[8:16], Hyper.from_dict(hp), SEED)
    assert len(updates) == 4 and all(s > 1 for s in updates)  # scaled, every step
    assert all(p.dtype == torch.float32 for p in model.parameters())
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert moved and torch.isfinite(torch.tensor(result.history[-1]["train_loss"]))
