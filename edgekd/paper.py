"""The paper's reported numbers (Tables 2-6 accuracy, Table 8 cost), keyed by edgekd's own names.

    from edgekd.paper import paper_value
    v = paper_value("covid_radiography", "vit_tiny_patch16_224", "ours", 0.01)
    str(v)  # '0.750 ± 0.012 (Table 2)'

The numbers live in one data file, `edgekd/configs/paper_tables.yaml`, each with the table, row
and column it is printed in, so a sweep on one of the paper's datasets (recognised by its
layout) can print the paper's value beside its own. Torch-free: reads YAML only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

PAPER_TABLES = Path(__file__).parent / "configs" / "paper_tables.yaml"


@dataclass(frozen=True)
class PaperValue:
    """One test accuracy the paper prints: mean ± std over its five subset draws."""

    table: int
    row: str  # as printed, e.g. "ViT-S / ViT-T / Ours" (teacher / student / method)
    column: str  # as printed, e.g. "1%" or "Ours_Swap"
    layout: str  # edgekd layout of the dataset (covid_radiography, covid_ct, brain_mri)
    student: str  # timm name
    method: str  # edgekd method name
    fraction: float
    mean: float
    std: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f} (Table {self.table})"


@dataclass(frozen=True)
class PaperCost:
    """One row of Table 8: peak GPU memory and wall-clock training time of a whole 300-epoch run."""

    table: int
    row: str
    layout: str
    student: str
    method: str
    fraction: float
    memory_mib: int
    time_s: int


@dataclass(frozen=True)
class PaperTables:
    accuracy: tuple[PaperValue, ...]
    cost: tuple[PaperCost, ...]


@lru_cache(maxsize=1)
def paper_tables() -> PaperTables:
    data = yaml.safe_load(PAPER_TABLES.read_text())
    return PaperTables(tuple(PaperValue(**r) for r in data["accuracy"]), tuple(PaperCost(**r) for r in data["cost"]))


def paper_value(layout: str, student: str, method: str, fraction: float) -> PaperValue | None:
    """The paper's accuracy for this cell, or None where the paper has none.

    Where several tables print the cell, the lowest-numbered wins: Tables 2-4 are the main
    results, Tables 5 and 6 reprint Ours and CM1 beside their variants (sometimes with other
    digits: see the data file's header).
    """
    hits = [v for v in paper_tables().accuracy
            if (v.layout, v.student, v.method) == (layout, student, method) and math.isclose(v.fraction, fraction)]
    return min(hits, key=lambda v: v.table, default=None)
