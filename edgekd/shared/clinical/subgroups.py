"""Per-subgroup clinical metrics: does the model miss one site's, scanner's or sex's positives more?

For each attribute column of a test manifest (a CSV's extra columns; a DICOM header's Manufacturer and
PatientSex) and each of its values, the per-class metrics of `metrics.clinical_metrics` on that
subgroup's images, and per class its sensitivity against the rest of the images (the complement): the
gap rest - subgroup, with an interval from one set of stratified draws over (class, in subgroup) strata,
so both sides keep their sizes in every replicate.

The flag follows the gate's rule (`gate.py`: an estimate beyond the margin AND an exact test saying it is
real), with the gate's sensitivity margin m and level alpha:
  FLAGGED    the gap exceeds m AND Fisher's exact test (one-sided: the subgroup's hits are fewer) has
             p < alpha after Holm's correction over the column's subgroup-class pairs;
  UNCERTAIN  the gap exceeds m, but could be chance at this size;
  OK         otherwise;
  TOO_FEW    fewer than MIN_IMAGES images of the class in the subgroup or in the rest: one miss among
             four images is 25 points, so such a gap is reported as unmeasurable, never flagged.
Why not the bootstrap interval as the test: it collapses to a point when a side's sensitivity is 0 or 1
(35 of 35 found), so a random split of a healthy model's test images was flagged. Why Holm: a column of
4 sites x 10 classes is 40 comparisons, and uncorrected some 2 would be flagged by chance alone; with it a
column without any real difference is flagged in at most alpha of reports. A flag describes the model
(the PyTorch reference has it too), so it is reported, not failed on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy.stats import fisher_exact
from sklearn.metrics import confusion_matrix

from edgekd.errors import EdgeKDError
from edgekd.shared.clinical.bootstrap import Estimate, interval, json_float, stratified_weights
from edgekd.shared.clinical.gate import GateConfig
from edgekd.shared.clinical.metrics import ClinicalMetrics, class_rates, clinical_metrics, validate, weighted_confusion

MIN_IMAGES = 5  # images of a class, in the subgroup and in the rest, below which a gap is not judged
MAX_VALUES = 20  # a column with more distinct values is an identifier or a raw number, not a subgroup


class Status(str, Enum):
    OK = "ok"
    UNCERTAIN = "uncertain"
    FLAGGED = "flagged"
    TOO_FEW = "too few images"


@dataclass(frozen=True)
class SensitivityGap:
    """One class in one subgroup: its sensitivity against the rest of the images'."""

    name: str
    n: int  # images of the class in the subgroup
    n_rest: int  # images of the class elsewhere
    subgroup: float
    rest: Estimate
    gap: Estimate  # rest - subgroup: positive = the subgroup's cases are missed more
    p_value: float  # Fisher's exact, one-sided, Holm-adjusted over the column; NaN when too few images
    status: Status

    def to_dict(self) -> dict:
        return {"n": self.n, "n_rest": self.n_rest, "rest_sensitivity": self.rest.to_dict(),
                "gap": self.gap.to_dict(), "p_value": json_float(self.p_value), "status": self.status.value}


@dataclass(frozen=True)
class Subgroup:
    column: str
    value: str
    metrics: ClinicalMetrics  # the per-class metrics on the subgroup's images alone
    gaps: list[SensitivityGap]

    @property
    def label(self) -> str:
        return f"{self.column} = {self.value}"

    def to_dict(self) -> dict:
        return {"n": self.metrics.n, "clinical": self.metrics.to_dict(),
                "sensitivity_vs_rest": {g.name: g.to_dict() for g in self.gaps}}


@dataclass(frozen=True)
class SubgroupReport:
    subgroups: list[Subgroup]
    notes: list[str]  # columns left out and why; images without a value
    margin: float  # the gate's sensitivity margin
    alpha: float  # the gate's level, for Fisher's test after Holm's correction

    @property
    def flagged(self) -> list[tuple[Subgroup, SensitivityGap]]:
        return [(s, g) for s in self.subgroups for g in s.gaps if g.status is Status.FLAGGED]

    def describe(self, s: Subgroup, g: SensitivityGap) -> str:
        return (f"{s.label}: {g.name} sensitivity {g.subgroup:.3f} vs {g.rest.value:.3f} for the rest "
                f"(gap {g.gap.format()}, margin {self.margin}, Holm p = {g.p_value:.3g})")

    def to_dict(self) -> dict:
        columns: dict[str, dict] = {}
        for s in self.subgroups:
            columns.setdefault(s.column, {})[s.value] = s.to_dict()
        return {"margin": self.margin, "alpha": self.alpha, "min_images": MIN_IMAGES,
                "flagged": [self.describe(*f) for f in self.flagged], "notes": list(self.notes), "columns": columns}

    def to_markdown(self) -> str:
        """Flags first, then per column the sensitivity-gap table and each subgroup's per-class table."""
        flagged = self.flagged
        gaps = [g for s in self.subgroups for g in s.gaps]
        few = sum(g.status is Status.TOO_FEW for g in gaps)
        lines = [f"**Subgroups: {len(flagged)} flagged**" + (":" if flagged else
                 f" (no subgroup's sensitivity trails the rest's by more than {self.margin} with evidence)."),
                 *[f"- {self.describe(*f)}" for f in flagged], *[f"- note: {n}" for n in self.notes]]
        if few:
            lines.append(f"- {few} of {len(gaps)} subgroup-class pairs have fewer than {MIN_IMAGES} images of the "
                         "class in the subgroup or in the rest: too few to judge, not flagged")
        for column in dict.fromkeys(s.column for s in self.subgroups):
            mine = [s for s in self.subgroups if s.column == column]
            lines += ["", f"### By {column}", "",
                      "| subgroup | class | n | sensitivity | rest n | rest sensitivity | gap (rest - subgroup) "
                      "| Holm p | flag |",
                      "|---|---|---:|---:|---:|---:|---:|---:|---|"]
            lines += [f"| {s.value} | {g.name} | {g.n} | {s.metrics.per_class[c].sensitivity.format()} | {g.n_rest} | "
                      f"{g.rest.format()} | {g.gap.format(signed=True)} | {_p(g.p_value)} | {g.status.value} |"
                      for s in mine for c, g in enumerate(s.gaps)]
            for s in mine:
                lines += ["", f"**{s.label}** ({s.metrics.n} images)", "", s.metrics.to_markdown().rstrip("\n")]
        return "\n".join(lines) + "\n"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def subgroup_metrics(y_true, y_prob, classes: list[str], attributes: Mapping[str, Sequence[str | None]],
                     config: GateConfig | None = None) -> SubgroupReport:
    """Per-class metrics of every subgroup (attribute column x value) of one model's test probabilities
    (N, K), and each class's sensitivity gap to the rest. `attributes[column][i]` is image i's value
    (None: unknown; such an image is in no subgroup of that column and in every complement)."""
    cfg = config or GateConfig()
    y_true, y_prob, y_pred = validate(y_true, len(classes), y_prob)
    subgroups, notes = [], []
    for column, raw in attributes.items():
        values = np.array(list(raw), dtype=object)
        if values.shape != y_true.shape:
            raise EdgeKDError(f"subgroup column {column!r} has {values.size} values for {y_true.size} images; "
                              "fix: give one value (or null) per test image")
        known = sorted({v for v in values if v is not None})
        missing = int(sum(v is None for v in values))
        if missing:
            notes.append(f"{column}: {missing} images without a value (in no {column} subgroup)")
        if len(known) > MAX_VALUES:
            notes.append(f"{column}: {len(known)} distinct values, more than {MAX_VALUES}, so not reported; fix: bin "
                         "it into a few groups (e.g. age_band) to report it")
        elif len(known) < 2:
            notes.append(f"{column}: a single value ({known[0] if known else 'none'}), nothing to compare")
        else:
            masks = [values == v for v in known]
            p = holm(_shortfall_p(y_true, y_pred, masks, len(classes)))
            subgroups += [_subgroup(column, v, m, p[i], y_true, y_prob, y_pred, classes, cfg)
                          for i, (v, m) in enumerate(zip(known, masks))]
    return SubgroupReport(subgroups, notes, cfg.sensitivity_margin, cfg.alpha)


def _subgroup(column: str, value: str, mask: np.ndarray, p_value: np.ndarray, y_true: np.ndarray,
              y_prob: np.ndarray, y_pred: np.ndarray, classes: list[str], cfg: GateConfig) -> Subgroup:
    k = len(classes)
    metrics = clinical_metrics(y_true[mask], classes, y_prob=y_prob[mask], n_boot=cfg.n_boot, seed=cfg.seed,
                               confidence=cfg.confidence)
    rest_point = class_rates(confusion_matrix(y_true[~mask], y_pred[~mask], labels=np.arange(k))).sensitivity
    sub_reps, rest_reps = _sensitivity_replicates(y_true, y_pred, mask, k, cfg)
    n_sub, n_rest = np.bincount(y_true[mask], minlength=k), np.bincount(y_true[~mask], minlength=k)
    gaps = []
    for c, cm in enumerate(metrics.per_class):
        sub = cm.sensitivity.value
        rest = interval(rest_point[c], rest_reps[:, c], cfg.confidence)
        gap = interval(rest_point[c] - sub, rest_reps[:, c] - sub_reps[:, c], cfg.confidence)
        gaps.append(SensitivityGap(cm.name, int(n_sub[c]), int(n_rest[c]), float(sub), rest, gap, float(p_value[c]),
                                   _status(int(n_sub[c]), int(n_rest[c]), gap, p_value[c], cfg)))
    return Subgroup(column, str(value), metrics, gaps)


def _shortfall_p(y_true: np.ndarray, y_pred: np.ndarray, masks: list[np.ndarray], k: int) -> np.ndarray:
    """(V, K) Fisher's exact p that subgroup v finds fewer of class k's images than the rest does; NaN
    where either side has fewer than MIN_IMAGES of them."""
    hit = y_pred == y_true
    p = np.full((len(masks), k), np.nan)
    for i, m in enumerate(masks):
        n, n_rest = np.bincount(y_true[m], minlength=k), np.bincount(y_true[~m], minlength=k)
        hits, hits_rest = np.bincount(y_true[m & hit], minlength=k), np.bincount(y_true[~m & hit], minlength=k)
        for c in np.flatnonzero(np.minimum(n, n_rest) >= MIN_IMAGES):
            table = [[hits[c], n[c] - hits[c]], [hits_rest[c], n_rest[c] - hits_rest[c]]]
            p[i, c] = fisher_exact(table, alternative="less").pvalue
    return p


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment over the defined entries of `p` (NaN stay NaN): the i-th smallest of
    m p-values is scaled by m - i + 1, kept monotone and capped at 1."""
    flat = p.astype(float).ravel()
    order = np.flatnonzero(~np.isnan(flat))
    order = order[np.argsort(flat[order], kind="stable")]
    scaled = (len(order) - np.arange(len(order))) * flat[order]
    flat[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return flat.reshape(p.shape)


def _sensitivity_replicates(y_true: np.ndarray, y_pred: np.ndarray, mask: np.ndarray, k: int,
                            cfg: GateConfig) -> tuple[np.ndarray, np.ndarray]:
    """(B, K) bootstrap sensitivities of the subgroup and of the rest, from the same draws: each class is
    resampled within the subgroup and within the rest, so both keep their sizes."""
    sub, rest = [], []
    for w in stratified_weights(2 * y_true + mask, cfg.n_boot, cfg.seed):
        sub.append(class_rates(weighted_confusion(w * mask, y_true, y_pred, k)).sensitivity)
        rest.append(class_rates(weighted_confusion(w * ~mask, y_true, y_pred, k)).sensitivity)
    return np.concatenate(sub), np.concatenate(rest)


def _status(n: int, n_rest: int, gap: Estimate, p_value: float, cfg: GateConfig) -> Status:
    if min(n, n_rest) < MIN_IMAGES:
        return Status.TOO_FEW
    if gap.value <= cfg.sensitivity_margin:
        return Status.OK
    return Status.FLAGGED if p_value < cfg.alpha else Status.UNCERTAIN
