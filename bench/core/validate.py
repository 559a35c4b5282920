"""One way to check a setting's value before any work: exact types, finite numbers, ranges.

Every message is one line naming the source (a flag such as ``--set``, or ``file [table]``),
the key, the value as given and what is allowed, e.g.
``--set steps=2.7: expected an integer >= 1``.

- ``setting(key, value, default, source)``: a hyperparameter or method option. From a flag
  (a source starting ``--``) a string is parsed as the default's type; a typed value (from
  TOML) must already be of it (no string for a number, no bool as a number, no float as an
  integer, no silent truncation).
  Floats must be finite; keys in ``RANGES`` must lie in their range, other numbers (method
  options: ranks, token counts, search budgets, rates; none is negative) must be >= 0.
- ``integer``/``number``/``boolean``: one value of a profile key or a command-line option.
- ``unique``: a list that names something twice.
"""

from __future__ import annotations

import math
import re

from bench.core.errors import TunebenchError

SEED_MAX = 2**32 - 1  # numpy's seed range

# key -> (low, high, low inclusive): the training loop's settings and the shared options
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "lr": (0, None, False),
    "batch_size": (1, None, True),
    "grad_accum": (1, None, True),
    "steps": (1, None, True),
    "eval_every": (1, None, True),
    "eval_batch_size": (1, None, True),
    "warmup_ratio": (0, 1, True),
    "weight_decay": (0, None, True),
    "max_grad_norm": (0, None, True),
    "max_length": (0, None, True),  # 0 = the task's
    "dropout": (0, 1, True),
}
# any other number (a method option: ranks, token counts, budgets, rates) is at least 0
OTHER = (0, None, True)

# the type of each key in RANGES (the training loop's defaults are of these types)
KINDS = {k: 0.0 if k in ("lr", "warmup_ratio", "weight_decay", "max_grad_norm") else 0
         for k in RANGES if k != "dropout"}  # fmt: skip

_INT = re.compile(r"[+-]?\d+")


class SettingError(TunebenchError):
    """A setting whose value has the wrong type or lies outside its range."""


def _fail(source: str, key: str, value, expected: str) -> SettingError:
    return SettingError(f"{source} {key}={value!r}: expected {expected}")


def _range_text(kind: str, key: str) -> str:
    low, high, inclusive = RANGES.get(key, OTHER)
    noun = "an integer" if kind == "int" else "a finite number"
    if low is not None and high is not None:
        return f"{noun} in [{low}, {high}]"
    if low is not None:
        return f"{noun} {'>=' if inclusive else '>'} {low}"
    return noun


def _in_range(key: str, x: float) -> bool:
    low, high, inclusive = RANGES.get(key, OTHER)
    if low is not None and (x < low if inclusive else x <= low):
        return False
    return high is None or x <= high


def setting(key: str, value, default, source: str = "--set"):
    """``value`` as the type of ``default``, checked; raises SettingError naming all four."""
    kind = _kind(default)
    text = source.startswith("--") and isinstance(value, str)  # typed on a command line
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise _fail(source, key, value, "true or false")
    if kind == "str":
        if not isinstance(value, str):
            raise _fail(source, key, value, "a string")
        return value
    if kind is None:  # a list or table option: as given
        return value
    expected = _range_text(kind, key)
    x = _number(value, kind) if text or not isinstance(value, str) else None
    if x is None or not _in_range(key, x):
        raise _fail(source, key, value, expected)
    return x


def known(settings: dict, source: str = "--set") -> None:
    """Check the keys every method shares (``RANGES``) without knowing the method: the
    command line answers these before importing anything heavy."""
    for key, value in settings.items():
        if key in KINDS:
            setting(key, value, KINDS[key], source)


def _kind(default) -> str | None:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    return None


def _number(value, kind: str) -> int | float | None:
    """The number ``value`` holds, or None if it is not one of ``kind`` (int: no fraction,
    no bool; float: finite)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if kind == "int":
            return int(text) if _INT.fullmatch(text) else None
        try:
            value = float(text)
        except ValueError:
            return None
    if kind == "int":
        return value if isinstance(value, int) else None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def integer(value, key: str, source: str, low: int | None = None, high: int | None = None) -> int:
    """An exact integer (not a bool, not a float) in [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and (low is None or value >= low) and (high is None or value <= high):
        return value
    if low is not None and high is not None:
        expected = f"an integer in [{low}, {high}]"
    elif low is not None:
        expected = f"an integer >= {low}"
    else:
        expected = "an integer"
    raise _fail(source, key, value, expected)


def number(value, key: str, source: str, low: float | None = None) -> float:
    """A finite number (int or float, not a bool), at least ``low``."""
    x = _number(value, "float") if not isinstance(value, str) else None
    if x is None or (low is not None and x < low):
        raise _fail(
            source, key, value, "a finite number" + (f" >= {low}" if low is not None else "")
        )
    return x


def boolean(value, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(source, key, value, "true or false")
    return value


def unique(values, what: str, source: str) -> None:
    """Refuse a list that names the same thing twice, naming it (``seeds lists 13 twice``)."""
    seen = set()
    for v in values:
        if v in seen:
            raise TunebenchError(f"{source}: {what} lists {v!r} twice; give each once")
        seen.add(v)
