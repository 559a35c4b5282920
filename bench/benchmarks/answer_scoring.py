"""Scoring the label words at the answer position only, against full-vocabulary logits.

    python -m bench.benchmarks.answer_scoring [--backbone smollm2-135m] [--batch-size 32]
        [--rounds 5]

One batch of SST-2 test sentences rendered with the zero-shot template, inference
(``no_grad``, eval mode), three ways to get the same (B, C) label-word scores:

- ``answer position, label words``: the harness (``TaskModel``): the body, the hidden state at
  the answer position, then ``VerbalizerHead``: the LM head's rows of the C label words only.
- ``answer position, full vocabulary``: the body, the hidden state at the answer position, the
  whole LM head (V rows), then the label-word columns.
- ``every position, full vocabulary``: the backbone's own forward (``logits`` of shape
  (B, T, V), what a plain ``model(**batch).logits`` computes), then the answer position's
  label-word columns.

The three are checked to agree before timing. Runs alternate (the order rotating) after a
warm-up; the table gives median ms per batch and the speed-up of each over the last.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.backbones.cache import fresh_backbone
from bench.benchmarks import machine_line, median_ms, print_table, spread_ms, sst2_rows
from bench.engine import data
from methods import get_method
from tasks import get_task

SEED = 13


def scorers(backbone: str, batch_size: int, data_dir: str | None):
    task, method = get_task("SST-2"), get_method("zero-shot")
    b = fresh_backbone(backbone, torch.device("cpu"))
    model = method.build(b, task, method.hyperparameters()).eval()
    rows = sst2_rows(batch_size, "test", data_dir)
    batch = data.collate(data.encode_eval(model, rows, rows, SEED), rows, model.pad_id)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    at = (torch.arange(len(rows)), batch["position"])
    words = torch.tensor(model.encoder.word_ids)
    lm_head = b.model.get_output_embeddings()

    def label_words():
        return model(batch)  # (B, C)

    def answer_full_vocab():
        hidden = model.body(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
        return lm_head(hidden[at])[:, words]  # (B, V) -> (B, C)

    def every_position():
        return b.model(input_ids=ids, attention_mask=mask).logits[at][:, words]  # (B, T, V)

    info = {
        "tokens": tuple(ids.shape),
        "vocab": lm_head.weight.shape[0],
        "hidden": lm_head.weight.shape[1],
        "params": b.num_parameters(),
    }
    return (
        [
            ("answer position, label words (harness)", label_words),
            ("answer position, full vocabulary", answer_full_vocab),
            ("every position, full vocabulary", every_position),
        ],
        info,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1; 0 = torch's default)"
    )
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    fns, info = scorers(args.backbone, args.batch_size, args.data_dir)
    with torch.no_grad():
        reference = fns[-1][1]()
        for name, fn in fns:  # the same scores every way
            torch.testing.assert_close(fn(), reference, rtol=1e-4, atol=1e-4, msg=name)
        samples = {name: [] for name, _ in fns}
        for r in range(args.rounds):
            k = r % len(fns)
            for name, fn in fns[k:] + fns[:k]:
                t = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t)
    base = median_ms(samples[fns[-1][0]])
    b, t = info["tokens"]
    v, h = info["vocab"], info["hidden"]
    print(
        f"label-word scoring on {args.backbone}: a batch of {b} SST-2 test sentences (zero-shot "
        f"template), padded to {t} tokens; LM head {v:,} x {h} = {v * h / 1e6:.1f}M of "
        f"{info['params'] / 1e6:.1f}M parameters"
    )
    print(machine_line())
    print()
    rows = [
        {
            "scoring": name,
            "ms/batch (median)": f"{median_ms(s):.0f}",
            "IQR ms": spread_ms(s),
            "runs": len(s),
            "speed-up vs every position": f"{base / median_ms(s):.2f}x",
        }
        for name, s in samples.items()
    ]
    print_table(rows, list(rows[0]))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
