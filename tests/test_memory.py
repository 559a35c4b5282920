"""Predicted peak memory (bench/run/memory.py) against the run's own measurement, the
``memory`` command, and the sizes and refusals built on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.benchmarks.memory import TOLERANCE, cuda_workspace, measure
from bench.cli.app import main
from bench.core.errors import BackboneError, TunebenchError
from bench.run.memory import Estimate, estimate, fits, parse_size
from methods import REGISTRY, get_method
from tasks import get_task

SST2 = get_task("SST-2")
SMALL = {"steps": 2, "eval_every": 1000, "batch_size": 4, "max_length": 48}


def _ratio(backbone: str, name: str, device: torch.device) -> float:
    method = get_method(name)
    workspace = cuda_workspace() if device.type == "cuda" else None
    try:
        measured, batch = measure(method, backbone, SST2, SMALL, device)
    except BackboneError as e:
        pytest.skip(f"{name} does not run on {backbone}: {e}")
    est = estimate(backbone, method, SST2, SMALL, batch=batch, device=device.type,
                   cublas_workspace=workspace)  # fmt: skip
    return est.peak / measured["peak_bytes"]


@pytest.mark.parametrize("name", list(REGISTRY))
@pytest.mark.parametrize("backbone", ["tiny-roberta", "tiny-llama"])
def test_estimate_matches_the_runs_cpu_tracker(backbone, name):
    ratio = _ratio(backbone, name, torch.device("cpu"))
    assert abs(ratio - 1) <= TOLERANCE, f"{backbone} x {name}: estimate / measured = {ratio:.3f}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
@pytest.mark.parametrize("name", ["finetune", "lora", "prefix-tuning", "zero-shot"])
def test_estimate_matches_cuda_max_memory_allocated(name):
    ratio = _ratio("tiny-roberta", name, torch.device("cuda"))
    assert abs(ratio - 1) <= TOLERANCE, f"tiny-roberta x {name} on CUDA: ratio {ratio:.3f}"


def test_parts_follow_the_trainable_parameters():
    full = estimate("tiny-bert", get_method("finetune"), SST2, batch_size=2, max_length=16)
    lora = estimate("tiny-bert", get_method("lora"), SST2, batch_size=2, max_length=16)
    assert full.peak == full.weights + full.gradients + full.optimizer + full.activations
    # AdamW keeps two fp32 moments per trainable value, plus a 4-byte step per tensor
    assert 8 * full.trainable <= full.optimizer <= 8 * full.trainable + 4 * 1000
    assert lora.optimizer < full.optimizer / 10 and lora.trainable < full.trainable / 10
    zero = estimate("tiny-bert", get_method("zero-shot"), SST2, batch_size=2, max_length=16)
    assert zero.gradients == zero.optimizer == 0 and not zero.trains


def test_longer_batches_and_fp32_need_more():
    lora = get_method("lora")
    short = estimate("tiny-roberta", lora, SST2, batch_size=4, max_length=16)
    long = estimate("tiny-roberta", lora, SST2, batch_size=4, max_length=128)
    bf16 = estimate("tiny-roberta", lora, SST2, batch_size=4, max_length=128, precision="bf16")
    assert long.activations > 4 * short.activations
    assert bf16.activations < long.activations and bf16.weights == long.weights


def test_cuda_rounds_allocations_to_512_bytes_and_adds_the_workspace():
    cpu = estimate("tiny-bert", get_method("bitfit"), SST2, batch_size=2, max_length=16)
    cuda = estimate(
        "tiny-bert", get_method("bitfit"), SST2, batch_size=2, max_length=16, device="cuda"
    )
    assert cuda.weights % 512 == 0 and cuda.weights > cpu.weights  # bias vectors round up
    assert cuda.peak > cpu.peak


def test_cuda_keeps_no_attention_matrix():
    """BERT-style attention in training runs the math path on the CPU (probabilities and
    their dropout mask kept for backward, (B, heads, T, T) each); CUDA's fused kernels keep
    an fp32 log-sum-exp per query instead."""
    kw = dict(batch_size=4, max_length=256)
    cpu = estimate("tiny-bert", get_method("finetune"), SST2, **kw)
    cuda = estimate(
        "tiny-bert", get_method("finetune"), SST2, device="cuda", cublas_workspace=0, **kw
    )
    matrix = 4 * 4 * 256 * 256 * 4  # one layer's fp32 attention probabilities, 4 heads
    assert cpu.activations - cuda.activations > 2 * matrix  # two layers' worth at least


def test_bad_settings_are_one_line_errors():
    with pytest.raises(TunebenchError, match="precision 'fp8'"):
        estimate("tiny-bert", get_method("lora"), SST2, precision="fp8")
    with pytest.raises(TunebenchError, match="batch size 0: must be at least 1"):
        estimate("tiny-bert", get_method("lora"), SST2, batch_size=0, max_length=8)
    with pytest.raises(TunebenchError, match="max length 4096: backbone tiny-bert has 512"):
        estimate("tiny-bert", get_method("lora"), SST2, batch_size=1, max_length=4096)
    with pytest.raises(BackboneError, match="no bias terms"):
        estimate("tiny-llama", get_method("bitfit"), SST2)


@pytest.mark.parametrize(
    "text, expected",
    [("24GiB", 24 * 2**30), ("80 GB", 80 * 10**9), ("512mib", 2**29), ("100", 100)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["24 GiBs", "-3GB", "lots", "0"])
def test_parse_size_refuses(text):
    with pytest.raises(TunebenchError, match="expected a size such as 24GiB"):
        parse_size(text)


def _fake_estimate(**kw) -> Estimate:
    base = dict(backbone="roberta-large", method="finetune", label="finetune", batch_size=16,
                max_length=128, precision="fp32", device="cuda", trains=True, trainable=1,
                weights=1, gradients=1, optimizer=1, activations=30 * 2**30 - 3, peak=30 * 2**30)  # fmt: skip
    return Estimate(**{**base, **kw})


def test_fits_names_the_figure_and_the_fixes():
    msg = fits(_fake_estimate(), 24 * 2**30)
    assert "predicted peak 30.00 GiB > 24.00 GiB" in msg
    assert "batch_size=8 with grad_accum=2" in msg and "precision=bf16" in msg
    assert fits(_fake_estimate(peak=20 * 2**30), 24 * 2**30) is None
    assert "precision=bf16" not in fits(_fake_estimate(precision="bf16"), 24 * 2**30)


def test_memory_command_prints_the_parts_and_writes_json(tmp_path, capsys):
    out = tmp_path / "pred.json"
    argv = ["memory", "--backbone", "tiny-bert", "--method", "lora", "--method", "zero-shot",
            "--batch-size", "2", "--max-length", "16", "--precision", "fp32", "--precision",
            "bf16", "--device-memory", "1MiB", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    for word in ("weights", "gradients", "optimizer", "activations", "peak", "bf16", "NO"):
        assert word in text
    doc = json.loads(out.read_text())
    assert doc["schema"] == "tunebench.predicted-memory/1"
    assert {(e["method"], e["precision"]) for e in doc["estimates"]} == {
        (m, p) for m in ("lora", "zero-shot") for p in ("fp32", "bf16")
    }
    assert main(argv) == 2  # the file exists: no silent overwrite
    assert "add --force" in capsys.readouterr().err


def test_memory_command_refusals(capsys):
    assert main(["memory", "--backbone", "tiny-bert", "--method", "lora", "--device-memory",
                 "lots"]) == 2  # fmt: skip
    assert "device memory 'lots'" in capsys.readouterr().err
    assert main(["memory", "--backbone", "minilm-l6", "--method", "zero-shot"]) == 0
    assert "refused" in capsys.readouterr().out


def test_dry_run_prints_predicted_peaks_and_refuses_what_cannot_fit(tmp_path, data_root, capsys):
    args = ["sweep", "smoke", "--dry-run", "--results", str(tmp_path), "--tasks", "RTE",
            "--methods", "finetune,lora", "--seeds", "13"]  # fmt: skip
    assert main([*args, "--device-memory", "1GiB"]) == 0
    out = capsys.readouterr().out
    assert "predicted peak memory per cell (cuda, of 1.00 GiB)" in out
    assert all(" MiB" in line for line in out.splitlines() if line.startswith("to do"))
    assert main([*args, "--device-memory", "64KiB"]) == 2
    captured = capsys.readouterr()
    assert "does not fit" in captured.out
    assert "4 cells to do cannot fit" in captured.err
    assert "predicted peak" in captured.err and "MiB > 0.1 MiB of device memory" in captured.err
    assert "grad_accum=2" in captured.err
    # the smoke cells' precision is auto: bf16 autocast on CUDA already, so bf16 is no fix there
    assert ", bf16: predicted peak" in captured.err and "precision=bf16" not in captured.err
    smoke = (Path(__file__).parents[1] / "bench" / "sweep" / "profiles" / "smoke.toml").read_text()
    fixed = tmp_path / "smoke-fp32.toml"  # the same cells with the precision fixed to fp32
    fixed.write_text(smoke.replace("[settings]", '[settings]\nprecision = "fp32"', 1))
    fp32 = [*args[:1], str(fixed), *args[2:], "--device-memory", "64KiB"]
    assert main(fp32) == 2 and "bf16 autocast (precision=bf16)" in capsys.readouterr().err


def test_report_shows_the_predicted_column_for_paper_backbones(tmp_path):
    from report_records import record, write_all

    from bench.report import predicted
    from bench.report.make import make_report

    recs = [record(m, "SST-2", s, 0.8, backbone=b) for b in ("roberta-large", "tiny-roberta")
            for m in ("finetune", "lora") for s in (13, 21)]  # fmt: skip
    make_report(write_all(tmp_path, recs))
    board = (tmp_path / "leaderboard.md").read_text()
    assert "Predicted peak (GPU, fp32 / bf16)" in board and "predicted, not measured" in board
    want = predicted.lookup("roberta-large", "lora")
    cell = f"{want['fp32'] / 2**30:.2f} / {want['bf16'] / 2**30:.2f} GiB"
    lora_rows = [line for line in board.splitlines() if line.startswith("| lora | partial |")]
    assert len(lora_rows) == 2 and sum(cell in line for line in lora_rows) == 1  # tiny: none
    latex = (tmp_path / "tables" / "test-k16-roberta-large-efficiency.tex").read_text()
    assert "Predicted peak (GPU)" in latex and cell in latex
    assert cell in (tmp_path / "leaderboard.html").read_text()


def test_shipped_predictions_are_the_estimators():
    from bench.report import predicted

    shipped = predicted.lookup("roberta-base", "bitfit")
    now = estimate("roberta-base", get_method("bitfit"), SST2, batch_size=shipped["batch_size"],
                   max_length=shipped["max_length"], precision="fp32", device="cuda")  # fmt: skip
    assert now.peak == shipped["fp32"]
