"""Published numbers (``bench/report/published.json``) and where ours can stand beside them.

A published cell is comparable with one of ours when backbone, method label, K, task, test set
and metric all match; the protocol matches too when our cell has exactly the paper's seeds
(LM-BFF: 13, 21, 42, 87, 100), every one finished. Values are x100, as printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from bench.report.aggregate import Aggregate, Cell, Setting

SCHEMA = "tunebench.published/1"


@dataclass(frozen=True)
class PublishedColumn:
    task: str
    test_set: str
    metric: str
    label: str


@dataclass(frozen=True)
class PublishedRow:
    row: str
    method_label: str | None
    backbone: str
    k: int | None  # None: the full training set
    trainable_params: int | None
    verified: bool
    values: tuple  # per column: (value, spread or None) or None
    average: float | None = None


@dataclass(frozen=True)
class Source:
    id: str
    citation: str
    url: str
    protocol: str
    spread: str
    seeds: tuple[int, ...] | None
    read_from: str
    columns: tuple[PublishedColumn, ...]
    rows: tuple[PublishedRow, ...]


def load_published(text: str | None = None) -> list[Source]:
    """The sources in ``bench/report/published.json`` (or in ``text``), checked for shape."""
    if text is None:
        text = (
            resources.files("bench.report").joinpath("published.json").read_text(encoding="utf-8")
        )
    data = json.loads(text)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"published numbers: schema must be {SCHEMA}")
    sources = []
    for s in data["sources"]:
        columns = tuple(PublishedColumn(**c) for c in s["columns"])
        rows = []
        for r in s["rows"]:
            values = tuple(None if v is None else (v[0], v[1]) for v in r["values"])
            if len(values) != len(columns):
                raise ValueError(f"published {s['id']} row {r['row']!r}: one value per column")
            rows.append(PublishedRow(**{**r, "values": values}))
        seeds = tuple(s["seeds"]) if s.get("seeds") else None
        fields = {k: s[k] for k in ("id", "citation", "url", "protocol", "spread", "read_from")}
        sources.append(Source(**fields, seeds=seeds, columns=columns, rows=tuple(rows)))
    return sources


@dataclass(frozen=True)
class Match:
    source: Source
    row: PublishedRow
    column: PublishedColumn
    value: float
    spread: float | None
    setting: Setting
    cell: Cell  # ours

    @property
    def ours(self) -> float | None:
        mean = self.cell.stats.mean
        return None if mean is None else 100.0 * mean

    @property
    def difference(self) -> float | None:
        """Ours minus published, in points (x100)."""
        return None if self.ours is None else self.ours - self.value

    @property
    def same_protocol(self) -> bool:
        seeds = self.source.seeds
        return (
            seeds is not None
            and self.cell.expected == tuple(sorted(seeds))
            and self.cell.status == "complete"
        )


def matches(agg: Aggregate, sources: list[Source]) -> list[Match]:
    """Every published value that has a cell of ours with the same backbone, method label, K,
    task, test set and metric (full data, not partial)."""
    out = []
    for table in agg.tables:
        rows = {row.method_label: row for row in table.rows}
        cols = {(c.task, c.test_set, c.metric): c for c in table.columns if not c.partial}
        for src in sources:
            for prow in src.rows:
                mine = rows.get(prow.method_label)
                if mine is None or prow.backbone != table.backbone or prow.k != table.setting.k:
                    continue
                for pcol, v in zip(src.columns, prow.values):
                    col = cols.get((pcol.task, pcol.test_set, pcol.metric))
                    if v is None or col is None:
                        continue
                    out.append(Match(src, prow, pcol, v[0], v[1], table.setting, mine.cells[col]))
    return out
