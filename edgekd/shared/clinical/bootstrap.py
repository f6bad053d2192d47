"""Stratified bootstrap: the only resampling code in edgekd, shared by metrics, gate and operating point.

Resampling happens within each true class, so every replicate has exactly as many images of a rare class
as the test set: a class of 12 images is never drawn 3 times or 30, and its sensitivity has a fixed
denominator (as it does in the study being described). A replicate is a row of counts (how often each
image was drawn), not a list of indices, so the metrics of all replicates come from one weighted
reduction instead of a Python loop over replicates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: replicate rows are produced in chunks of at most this many cells (rows x images), bounding memory
#: on large test sets while staying vectorised
CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval; NaN (with `note` saying why) where undefined."""

    value: float
    lo: float
    hi: float
    note: str = ""

    @property
    def defined(self) -> bool:
        return not math.isnan(self.value)

    def to_dict(self) -> dict:
        d: dict = {"value": json_float(self.value), "ci": [json_float(self.lo), json_float(self.hi)]}
        if self.note:
            d["note"] = self.note
        return d

    def format(self, digits: int = 3, signed: bool = False) -> str:
        """`0.912 [0.871, 0.948]` (`+0.010 [-0.020, +0.030]` signed, for differences), `n/a` if undefined."""
        if not self.defined:
            return "n/a"
        spec = f"{'+' if signed else ''}.{digits}f"
        if math.isnan(self.lo):
            return f"{self.value:{spec}}"
        return f"{self.value:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"


def json_float(x: float) -> float | None:
    """NaN -> None: JSON has no NaN, and results.json must stay readable by any JSON parser."""
    return None if math.isnan(x) else float(x)


def stratified_weights(strata: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield (rows, N) int32 draw counts, `n_boot` rows in all: each row resamples every stratum
    with replacement to its own size. Same seed and data -> same rows."""
    strata = np.asarray(strata)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    rng = np.random.default_rng(seed)
    rows = max(1, CHUNK_CELLS // max(len(strata), 1))
    for start in range(0, n_boot, rows):
        b = min(rows, n_boot - start)
        w = np.zeros((b, len(strata)), np.int32)
        for idx in groups:
            draws = rng.integers(0, len(idx), size=(b, len(idx)))
            flat = (np.arange(b)[:, None] * len(idx) + draws).ravel()
            w[:, idx] = np.bincount(flat, minlength=b * len(idx)).reshape(b, len(idx))
        yield w


def interval(point: float, replicates: np.ndarray, confidence: float, note: str = "") -> Estimate:
    """Percentile interval of the replicates where the statistic is defined.

    Percentile rather than BCa: BCa's jackknife needs N re-evaluations per statistic, and the coverage
    test in tests/test_clinical.py holds percentile intervals of known rates near the nominal level.
    """
    if math.isnan(point):
        return Estimate(float("nan"), float("nan"), float("nan"), note)
    ok = replicates[~np.isnan(replicates)]
    if ok.size == 0:
        return Estimate(float(point), float("nan"), float("nan"), note or "no replicate defined it")
    if ok.size < replicates.size:
        note = note or f"interval from the {ok.size} of {replicates.size} replicates where it is defined"
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(ok, [tail, 1.0 - tail])
    return Estimate(float(point), float(lo), float(hi), note)
