"""Progress of one training run, for ``tunebench run``: on a terminal a bar (steps, the last and
best dev score, elapsed and ETA); elsewhere (a log file, a pipe, CI) one line per dev evaluation
on stderr, so a long run is never silent; or nothing (sweeps, tests)."""

from __future__ import annotations

import sys
import time

BAR, LINES = "bar", "lines"


class TrainProgress:
    """``mode``: ``"bar"`` (or True), ``"lines"``, or anything false for silence."""

    def __init__(self, total: int, mode: str | bool | None):
        self.total, self.lines = total, mode == LINES
        self.start = time.perf_counter()
        self.best: tuple[int, float] | None = None  # (step, dev score)
        self.bar = None
        if mode and not self.lines:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="train", unit="step", leave=False)

    def update(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def dev(self, step: int, metric: str, score: float) -> None:
        """After a dev evaluation at ``step`` (1-based)."""
        if self.best is None or score > self.best[1]:
            self.best = (step, score)
        text = f"dev {metric} {score:.4f} (best {self.best[1]:.4f} at step {self.best[0]})"
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)
        elif self.lines:
            elapsed = time.perf_counter() - self.start
            left = elapsed / step * (self.total - step)
            print(f"train step {step}/{self.total}  {text}  {_secs(elapsed)} elapsed, "
                  f"~{_secs(left)} left", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"
