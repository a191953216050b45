"""The zoo: one record per published robust CLIP checkpoint (`zoo.json`), what it is, where it is, in which format,
under which licence, and the figures its paper reports with their protocol."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cache

from ..errors import UnknownNameError
from .formats import FORMATS

ZOO_FILE = os.path.join(os.path.dirname(__file__), "zoo.json")


@dataclass(frozen=True)
class ReportedFigure:
    """A figure a paper reports: `value` (%) of `metric` (`clean` or `robust`) under `attack` (e.g.
    `autoattack@4/255`), averaged over `datasets`, in the evaluation a `protocol` reproduces; `evidence` says where."""

    protocol: str
    metric: str
    attack: str | None
    datasets: list[str] | str
    value: float
    evidence: str

    @property
    def dataset_list(self) -> list[str] | None:
        """The datasets as benchmark names, or `None` where the paper's set is described in words only."""
        return list(self.datasets) if isinstance(self.datasets, list) else None


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint. `source` is `{"kind": "hub"|"url"|"unreleased", "repo", "file", "url"}`;
    `verified` says what of the format was checked against the authors' code and what was not."""

    name: str
    method: str
    paper: dict
    released_by: str
    backbone: str
    image_size: int
    base_model: str | None
    training_data: str | None
    train_eps: str | None
    source: dict
    format: str
    normalization: str | None
    licence: str
    verified: dict
    reported: tuple[ReportedFigure, ...] = field(default_factory=tuple)
    hidden_act: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"zoo entry {self.name}: format {self.format!r} is not one of {FORMATS}")
        figures = tuple(r if isinstance(r, ReportedFigure) else ReportedFigure(**r) for r in self.reported)
        object.__setattr__(self, "reported", figures)

    @property
    def downloadable(self) -> bool:
        """Whether `pmg-aft zoo import NAME` can fetch it itself (a Hub file) rather than needing `--file`."""
        return self.source.get("kind") == "hub"

    @property
    def location(self) -> str:
        kind = self.source.get("kind")
        if kind == "hub":
            return f"hf://{self.source['repo']}" + (f"/{self.source['file']}" if self.source.get("file") else "")
        return self.source.get("url") or "not released"

    def to_dict(self) -> dict:
        return asdict(self)


@cache
def zoo_entries() -> dict[str, ZooEntry]:
    """Every zoo record, by name."""
    with open(ZOO_FILE, encoding="utf-8") as f:
        records = json.load(f)["checkpoints"]
    return {r["name"]: ZooEntry(**r) for r in records}


def get_zoo_entry(name: str) -> ZooEntry:
    """The zoo record `name`; an unknown name lists the known ones."""
    entries = zoo_entries()
    if name not in entries:
        raise UnknownNameError(
            f"{name!r} is not in the zoo; the checkpoints are: {', '.join(entries)} (pmg-aft zoo list)."
        )
    return entries[name]


def zoo_table() -> str:
    """`pmg-aft zoo list`: one line per checkpoint, with what can be downloaded here and what needs `--file`."""
    rows = [("name", "method", "backbone", "eps", "format", "licence", "get it", "layout read in code")]
    for e in zoo_entries().values():
        get = "import downloads it" if e.downloadable else ("not released" if e.source.get("kind") == "unreleased"
                                                             else "manual download, then --file")  # fmt: skip
        rows.append((e.name, e.method, e.backbone, e.train_eps or "?", e.format, e.licence, get,
                     "yes" if e.verified.get("format") else "no"))  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("")
    lines += [f"{e.name}: {e.location}" for e in zoo_entries().values()]
    return "\n".join(lines)
