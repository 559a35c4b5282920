"""Did the numbers come back? Two folders of run records (the reference, e.g. the committed
``results/cpu/``, and a re-run) compared cell by cell (backbone, task, method, K, seed).

For each cell in both, the re-run's test score is

- **identical**: the same float as the reference's;
- **within std**: different, but by no more than the reference cell's standard deviation over
  its seeds (ddof 0, as the report; a method run on one seed has none, so any change is
  *different*);
- **different**: further than that, or one of the two runs failed where the other finished.

Cells only in the reference are *not re-run* (e.g. a subset of a profile was re-run), cells only
in the re-run are *new*; neither counts for or against. Beside each cell, and once for the
whole folder, the environment difference: CPU model and count, device, torch threads,
precision where the record has one, package versions, each as reference -> re-run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.report.aggregate import Record, load_records, summarize

IDENTICAL, WITHIN, DIFFERENT = "identical", "within std", "different"
VERDICTS = (IDENTICAL, WITHIN, DIFFERENT)


def _key(r: Record) -> tuple:
    c = r.cell
    return (str(r.data.get("profile") or ""), c["backbone"], c["task"], c["partial"],
            c["method_label"], c["k"], c["seed"])  # fmt: skip


def cell_name(key: tuple) -> str:
    profile, backbone, task, partial, label, k, seed = key
    return f"{backbone}/{task}{'-partial' if partial else ''}/{label}/k{k}-seed{seed}"


def environment(record: dict) -> dict[str, str]:
    """The parts of a record's environment that can move a score, flat: ``cpu``, ``cpu_count``,
    ``device``, ``torch_threads``, ``precision`` (where recorded) and one key per package."""
    env = record.get("env") or {}
    hw = env.get("hardware") or {}
    config = record.get("config") or {}
    hp = config.get("hyperparameters") or {}
    out = {
        "cpu": hw.get("cpu"),
        "cpu_count": hw.get("cpu_count"),
        "gpu": hw.get("gpu") or hw.get("cuda_device"),
        "device": env.get("device"),
        "torch_threads": hw.get("torch_threads"),
        "precision": config.get("precision") or hp.get("precision") or env.get("precision"),
    }
    out.update({f"{name}": v for name, v in (env.get("packages") or {}).items()})
    return {k: str(v) for k, v in out.items() if v is not None and v != ""}


def env_difference(a: dict[str, str], b: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Keys whose value differs, as (reference, re-run); a key one side lacks shows '-'."""
    return {k: (a.get(k, "-"), b.get(k, "-")) for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k)}  # fmt: skip


@dataclass(frozen=True)
class CellComparison:
    key: tuple
    reference: float | None  # None: that run failed
    rerun: float | None
    seed_std: float | None  # the reference cell's std over its seeds; None with one seed
    verdict: str
    env: dict[str, tuple[str, str]]

    @property
    def name(self) -> str:
        return cell_name(self.key)


@dataclass(frozen=True)
class Comparison:
    cells: list[CellComparison]
    not_rerun: list[str]
    new: list[str]
    env: dict[str, tuple[str, str]]  # over all compared cells: values joined when several

    def count(self, verdict: str) -> int:
        return sum(c.verdict == verdict for c in self.cells)

    @property
    def verdict(self) -> str:
        """One line: what came back."""
        n = len(self.cells)
        counts = ", ".join(f"{self.count(v)} {v}" for v in VERDICTS)
        extra = "".join(
            f"; {len(names)} {what}"
            for names, what in ((self.not_rerun, "not re-run"), (self.new, "new"))  # fmt: skip
            if names
        )
        if n == 0:
            return f"nothing to compare: no cell is in both folders{extra}"
        if self.count(DIFFERENT):
            head = (
                f"NOT reproduced: {self.count(DIFFERENT)} of {n} cells differ beyond their seed std"
            )
        elif self.count(WITHIN):
            head = f"reproduced within seed std: {n} of {n} cells"
        else:
            head = f"reproduced exactly: {n} of {n} cells identical"
        return f"{head} ({counts}{extra})"


def _score(r: Record) -> float | None:
    return float(r.data["test_score"]) if r.ok and r.data.get("test_score") is not None else None


def compare(reference_dir: Path, rerun_dir: Path) -> Comparison:
    """Every cell of ``rerun_dir`` against the same cell in ``reference_dir``."""
    ref = {_key(r): r for r in load_records(Path(reference_dir)).records}
    new = {_key(r): r for r in load_records(Path(rerun_dir)).records}
    groups: dict[tuple, list[float]] = defaultdict(list)  # the reference's seeds per cell group
    for key, r in ref.items():
        if (s := _score(r)) is not None:
            groups[key[:-1]].append(s)
    cells = []
    env_values: dict[str, tuple[set, set]] = defaultdict(lambda: (set(), set()))
    for key in sorted(ref.keys() & new.keys(), key=_sort_key):
        a, b = _score(ref[key]), _score(new[key])
        scores = groups.get(key[:-1], [])
        std = summarize(scores).std if len(scores) > 1 else None
        if a is not None and a == b:
            verdict = IDENTICAL
        elif a is not None and b is not None and std is not None and abs(b - a) <= std:
            verdict = WITHIN
        else:
            verdict = DIFFERENT
        ea, eb = environment(ref[key].data), environment(new[key].data)
        for k in ea.keys() | eb.keys():
            env_values[k][0].add(ea.get(k, "-"))
            env_values[k][1].add(eb.get(k, "-"))
        cells.append(CellComparison(key, a, b, std, verdict, env_difference(ea, eb)))
    env = {
        k: (", ".join(sorted(va)), ", ".join(sorted(vb)))
        for k, (va, vb) in sorted(env_values.items())
        if va != vb
    }
    return Comparison(
        cells,
        [cell_name(k) for k in sorted(ref.keys() - new.keys(), key=_sort_key)],
        [cell_name(k) for k in sorted(new.keys() - ref.keys(), key=_sort_key)],
        env,
    )


def _sort_key(key: tuple) -> tuple:
    return tuple(str(p) if not isinstance(p, int) else f"{p:012d}" for p in key)


def _pct(x: float | None) -> str:
    return "failed" if x is None else f"{100 * x:.2f}"


def _some(names: list[str], shown: int = 8) -> str:
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def lines(comp: Comparison) -> list[str]:
    """The comparison as text: one line per cell, the environment difference, the verdict."""
    out = []
    if comp.cells:
        width = max(len(c.name) for c in comp.cells)
        out.append(
            f"{'cell':<{width}}  {'reference':>9}  {'re-run':>9}  {'change':>7}  "
            f"{'seed std':>8}  {'verdict':<10}  environment difference"
        )
        for c in comp.cells:
            change = (
                f"{100 * (c.rerun - c.reference):+.2f}"
                if c.reference is not None and c.rerun is not None
                else "-"
            )
            std = "n/a" if c.seed_std is None else f"{100 * c.seed_std:.2f}"
            env = "; ".join(f"{k} {a} -> {b}" for k, (a, b) in c.env.items()) or "none"
            out.append(
                f"{c.name:<{width}}  {_pct(c.reference):>9}  {_pct(c.rerun):>9}  {change:>7}  "
                f"{std:>8}  {c.verdict:<10}  {env}"
            )
        out.append("(scores x100; seed std: the reference cell's, ddof=0, over its seeds)")
    if comp.not_rerun:
        out.append(f"not re-run ({len(comp.not_rerun)}): " + _some(comp.not_rerun))
    if comp.new:
        out.append(f"new, not in the reference ({len(comp.new)}): " + _some(comp.new))
    if comp.env:
        out.append("environment, reference -> re-run:")
        out += [f"  {k}: {a} -> {b}" for k, (a, b) in comp.env.items()]
    elif comp.cells:
        out.append("environment: the same CPU, device, threads and package versions")
    out.append(comp.verdict)
    return out
