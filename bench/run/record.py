"""The run record: one self-describing JSON document per finished run or cell.

Schema ``tunebench.run/1`` (every key always present; values null where not applicable):

- ``schema``, ``created`` (UTC ISO time), ``status`` ("ok" | "failed"), ``error`` (message or null)
- ``cell``: backbone, task, method (registry name), method_label (name shown in tables, e.g.
  "zero-shot+cc"), family, k, seed, partial (true if the task ran on partial data)
- ``config``: hyperparameters (resolved: defaults + overrides), prompt (variant, template,
  label words: what the model read, a searched one included), verbalizer (the head's own
  description, e.g. the word lists of a multi-word verbalizer; null for one word per class),
  max_length, precision (resolved: fp32 | bf16 | fp16; ``auto`` in hyperparameters becomes
  what the device runs fast), pooling (what a classifier head read: cls | mean | last; null
  for the LM head), demonstrations (per_label, order: sorted | random, how sampled; null
  without them), split (fingerprint, sizes, short labels), data_root
- ``found``: what a prompt or verbalizer search found before training (searched methods:
  template, words, candidates and their dev scores); null otherwise
- ``dev``: the best dev state's metrics and ``best_step``; ``test``: {test-set name: metrics};
  ``primary_metric``; ``test_score`` (the primary metric on the first test set)
- ``predictions``: {test-set name: labels, pred (class index per example in the test file's
  order; a string of digits when every class is one digit, else a list), probs (one string:
  per example, space-separated, its class probabilities comma-separated with 4 decimals)};
  for example-by-example comparisons
- ``history``: one entry per dev evaluation (step, train_loss, dev_loss, dev_<metric>)
- ``params``: trainable, method, head, backbone_total, trainable_pct_of_backbone
- ``memory``: peak_bytes of one training step (inference batch for untrained methods), how
  (the measurement used), device
- ``compute``: tokens through the trunk and estimated FLOPs (bench/engine/compute.py):
  flop_parameters (N), how (the estimate), then {tokens, padded_tokens, flops} for the
  chosen trial's search, train (steps, and a frozen trunk's feature pass), dev (every dev
  evaluation), any other phase (memory: an untrained method's probe batch), test (per test
  set), total (the trial with its test pass), and cell (everything the cell ran: every trial,
  pruned and failed ones included, searches, test; what utilization is measured on). A pass
  served from the feature cache counts nothing. Null if the cell failed before its test.
- ``time``: prompt_search_s (a prompt or verbalizer search, once per cell), build_s,
  train_s, train_examples_per_s, eval_s, eval_examples_per_s, total_s; sweeps add search_s
  (all trials)
- ``trials``: hyperparameter-search trials (sweeps; empty for a single run): number, params
  (the searched values), state (COMPLETE | PRUNED | FAIL), dev (primary metric; a pruned
  trial's best before it stopped), dev_loss, best_step, steps (run), error, traceback, seconds
- ``search``: how the cell was searched (sweeps; null for a single run): mode (tpe | grid),
  n_trials, searched, grid, fixed, sampler, sampler_seed, pruner and its settings, tie_rule,
  study, storage, chosen_trial
- ``profile``: the sweep profile's name (null for a single run)
- ``planned_seeds`` (sweeps only, when the profile ran this method on fewer than its seeds):
  those seeds; the report shows the others as "not run" rather than missing
- ``env``: packages, hardware, git (commit, dirty), device
"""

from __future__ import annotations

import datetime as dt

from bench.engine.measure import git_state, hardware, package_versions

SCHEMA = "tunebench.run/1"


def environment(device: str) -> dict:
    return {
        "packages": package_versions(),
        "hardware": hardware(),
        "git": git_state(),
        "device": device,
    }


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_record(cell: dict, device: str) -> dict:
    return {
        "schema": SCHEMA,
        "created": now(),
        "status": "failed",
        "error": None,
        "cell": cell,
        "config": {},
        "found": None,
        "dev": None,
        "test": None,
        "primary_metric": None,
        "test_score": None,
        "predictions": None,
        "history": [],
        "params": None,
        "memory": None,
        "compute": None,
        "time": {},
        "trials": [],
        "search": None,
        "profile": None,
        "env": environment(device),
    }
