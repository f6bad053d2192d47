"""The sweep's cells: datasets x fractions x methods x draws (x hyperparameter values), each an
ordinary run directory, and whether a cell is already done with the settings asked for."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.config import load_config
from edgekd.errors import EdgeKDError


@dataclass
class Cell:
    dataset: str
    fraction: float
    method: str
    draw: int
    params: dict[str, str] = field(default_factory=dict)

    @property
    def param_label(self) -> str:
        return ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.params.items())

    def run_dir(self, out: Path) -> Path:
        parts = [_slug(self.dataset), f"f{self.fraction:g}", self.method]
        if self.params:
            parts.append(_slug(self.param_label))
        return out / "cells" / Path(*parts) / f"draw{self.draw}"

    def overrides(self, out: Path, seed: int) -> list[str]:
        return [
            f"data.root={self.dataset}", f"data.fraction={self.fraction}", f"data.draw={self.draw}",
            f"seed={seed + self.draw}", f"method={self.method}", *(f"{k}={v}" for k, v in self.params.items()),
            f"run_dir={self.run_dir(out)}", "progress=false",
        ]


def _slug(text: str) -> str:
    text = os.path.basename(os.path.normpath(text)) if os.sep in text else text
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in text) or "_"


def parse_params(items: list[str]) -> list[dict[str, str]]:
    """`["method.alpha=0.3,0.6", "method.tau=2,4"]` -> the cartesian product as override dicts."""
    axes = []
    for item in items:
        if "=" not in item:
            raise EdgeKDError(f"--param {item!r}: expected KEY=V1,V2,... (e.g. method.alpha=0.2,0.6,1.0)")
        key, values = item.split("=", 1)
        axes.append([(key, v.strip()) for v in values.split(",") if v.strip()])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def plan(datasets: list[str], fractions: list[float], methods: list[str], draws: int,
         params: list[dict[str, str]]) -> list[Cell]:
    """Draw-major order, so every table entry gets its first value early in a long sweep."""
    return [Cell(ds, f, m, d, p) for d in range(draws) for ds in datasets for f in fractions for m in methods
            for p in params]


VOLATILE = ("resume", "stop_after", "progress", "num_threads", "trackers", "log_every", "num_workers")


def same_config(cell: Cell, out: Path, config: str, base_overrides: list[str], seed: int) -> bool:
    """The cell's run directory was started with the config this sweep asks for."""
    run_dir = cell.run_dir(out)
    if not (run_dir / "config.yaml").exists():
        return False
    want = load_config(config, [*base_overrides, *cell.overrides(out, seed)]).to_dict()
    have = load_config(run_dir / "config.yaml").to_dict()
    for key in VOLATILE:
        want.pop(key, None)
        have.pop(key, None)
    return want == have


def is_done(cell: Cell, out: Path, config: str, base_overrides: list[str], seed: int) -> bool:
    """Finished AND trained with the config this sweep asks for (a changed setting re-runs the cell)."""
    return (cell.run_dir(out) / "results.json").exists() and same_config(cell, out, config, base_overrides, seed)
