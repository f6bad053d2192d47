"""The paired non-inferiority gate: is an exported artifact clinically as good as its reference, class by class?

Both models score the same test images, so the comparison is paired: for class k's sensitivity the
evidence is the discordant images of class k (reference right and artifact wrong = losses, the reverse =
gains); for its specificity, the images of other classes whose "is it k?" answer changed. Each gets a
paired bootstrap interval of the difference (artifact - reference; images resampled within true class,
the same draws for both models) and McNemar's exact test on its discordant pairs.

The rule, per class and metric, with margin m:
  FAIL          the estimated loss exceeds m AND McNemar finds the loss real (p < alpha);
  PASS          otherwise, when the interval's worst end is within m (non-inferiority shown);
  INCONCLUSIVE  otherwise, with an estimate of how many more images would decide.
Why AND, where issue 17 proposed either rule alone: the estimate alone fails a single flipped image in a
class of 15 (one flip = 6.7 points), i.e. noise in small classes; McNemar alone tests "no difference",
not "difference within the margin", so it fails a real but clinically irrelevant shift (quantization
moves borderline images consistently one way) however small. Together they fail exactly when the data
show a loss beyond the margin; a real loss within the margin passes, and one not yet pinned down is
INCONCLUSIVE. A class's verdict is the worse of its sensitivity and specificity verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np
from scipy.stats import binomtest, norm
from sklearn.metrics import confusion_matrix

from edgekd.errors import EdgeKDError
from edgekd.shared.clinical.bootstrap import Estimate, interval, json_float, stratified_weights
from edgekd.shared.clinical.calibration import expected_calibration_error
from edgekd.shared.clinical.metrics import class_rates, validate, weighted_confusion


class Outcome(str, Enum):
    PASS = "pass"
    INCONCLUSIVE = "inconclusive"
    FAIL = "fail"


_SEVERITY = {Outcome.PASS: 0, Outcome.INCONCLUSIVE: 1, Outcome.FAIL: 2}


def worst(outcomes) -> Outcome:
    return max(outcomes, key=_SEVERITY.__getitem__, default=Outcome.PASS)


@dataclass(frozen=True)
class GateConfig:
    # Margins and alpha measured in benchmarks/results/gate_margins.md (healthy artifacts vs a planted loss
    # of one class): of the settings swept, this one catches the loss most often within the false-fail
    # target; narrower margins only make healthy artifacts inconclusive, alpha 0.01 or wider margins miss
    # more losses. No setting reaches the catch target with ~100 test images of a class; that file says
    # how many a test set needs.
    sensitivity_margin: float = 0.05  # tolerated loss of a class's sensitivity (absolute)
    specificity_margin: float = 0.05
    alpha: float = 0.05  # McNemar's level for calling a loss real
    max_ece_increase: float = 0.02  # artifact ECE - reference ECE above this fails the artifact
    n_boot: int = 1000
    seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("sensitivity_margin", "specificity_margin", "max_ece_increase"):
            if not 0 <= getattr(self, name) < 1:
                raise EdgeKDError(f"gate {name} must be in [0, 1), got {getattr(self, name)}; "
                                  "fix: give it as a fraction (0.05 = 5 points)")
        if not (0 < self.alpha < 1 and 0 < self.confidence < 1 and self.n_boot >= 1):
            raise EdgeKDError("gate needs 0 < alpha < 1, 0 < confidence < 1 and n_boot >= 1; fix: check the options")


@dataclass(frozen=True)
class PairedDiff:
    """One metric of one class, artifact against reference on the same images."""

    metric: str  # "sensitivity" or "specificity"
    n: int  # images it is measured on: of the class (sensitivity) or of the other classes (specificity)
    reference: float
    artifact: float
    diff: Estimate  # artifact - reference, with its paired interval
    losses: tuple[int, ...]  # image indices the artifact now gets wrong for this metric (reference right)
    gains: tuple[int, ...]  # image indices the artifact now gets right (reference wrong)
    p_value: float  # McNemar's exact test (two-sided) on losses vs gains
    outcome: Outcome
    reason: str
    more_images: int | None = None  # INCONCLUSIVE: about how many more images like the n would decide

    def to_dict(self) -> dict:
        return {**asdict(self), "reference": json_float(self.reference), "artifact": json_float(self.artifact),
                "diff": self.diff.to_dict(), "losses": list(self.losses), "gains": list(self.gains),
                "outcome": self.outcome.value}


@dataclass(frozen=True)
class ClassVerdict:
    name: str
    index: int
    support: int  # test images of this class
    sensitivity: PairedDiff
    specificity: PairedDiff

    @property
    def outcome(self) -> Outcome:
        return worst((self.sensitivity.outcome, self.specificity.outcome))

    @property
    def flipped(self) -> list[int]:
        """Indices of the images whose answer for this class changed (map them to paths to look)."""
        s, p = self.sensitivity, self.specificity
        return sorted({*s.losses, *s.gains, *p.losses, *p.gains})


@dataclass(frozen=True)
class CalibrationCheck:
    reference_ece: float
    artifact_ece: float
    max_increase: float

    @property
    def increase(self) -> float:
        return self.artifact_ece - self.reference_ece

    @property
    def outcome(self) -> Outcome:
        return Outcome.FAIL if self.increase > self.max_increase else Outcome.PASS


@dataclass(frozen=True)
class GateResult:
    classes: list[ClassVerdict]
    calibration: CalibrationCheck
    config: GateConfig

    @property
    def outcome(self) -> Outcome:
        return worst([c.outcome for c in self.classes] + [self.calibration.outcome])

    def passed(self, strict: bool = False) -> bool:
        """Inconclusive is not a failure unless `strict` (the CLI's --strict)."""
        return self.outcome is Outcome.PASS or (self.outcome is Outcome.INCONCLUSIVE and not strict)

    def with_outcome(self, outcome: Outcome) -> list[ClassVerdict]:
        return [c for c in self.classes if c.outcome is outcome]

    def to_dict(self) -> dict:
        cal = self.calibration
        return {
            "outcome": self.outcome.value,
            "config": asdict(self.config),
            "calibration": {**asdict(cal), "increase": cal.increase, "outcome": cal.outcome.value},
            "per_class": {c.name: {"support": c.support, "outcome": c.outcome.value,
                                   "sensitivity": c.sensitivity.to_dict(), "specificity": c.specificity.to_dict()}
                          for c in self.classes},
        }

    def to_markdown(self, paths: Sequence[str] | None = None, max_listed: int = 10) -> str:
        """Verdict line first (inconclusive loudly), the per-class table, then the flipped images of
        every class that did not pass (`paths[i]` names image i; indices are shown without it)."""
        lines = [f"**Per-class gate: {self.outcome.value.upper()}**" + "".join(
            f"; {o.value}: {', '.join(c.name for c in self.with_outcome(o))}"
            for o in (Outcome.FAIL, Outcome.INCONCLUSIVE) if self.with_outcome(o))]
        cal = self.calibration
        lines += [f"ECE {cal.reference_ece:.4f} -> {cal.artifact_ece:.4f} ({cal.increase:+.4f}, allowed "
                  f"+{cal.max_increase}): {cal.outcome.value}.", "",
                  "| class | n | Δ sensitivity | McNemar p | Δ specificity | McNemar p | outcome |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for c in self.classes:
            s, p = c.sensitivity, c.specificity
            lines.append(f"| {c.name} | {c.support} | {s.diff.format(signed=True)} | {s.p_value:.3g} | "
                         f"{p.diff.format(signed=True)} | {p.p_value:.3g} | {c.outcome.value} |")
        for c in self.classes:
            if c.outcome is Outcome.PASS:
                continue
            lines += ["", f"{c.name}: " + "; ".join(f"{d.metric} {d.reason}" for d in (c.sensitivity, c.specificity)
                                                    if d.outcome is not Outcome.PASS)]
            shown = [paths[i] if paths is not None else f"image {i}" for i in c.flipped[:max_listed]]
            more = len(c.flipped) - len(shown)
            lines += [f"- {s}" for s in shown] + ([f"- ... and {more} more"] if more > 0 else [])
        return "\n".join(lines) + "\n"


def paired_gate(y_true, reference_prob, artifact_prob, classes: list[str],
                config: GateConfig | None = None) -> GateResult:
    """Judge an artifact against its reference from both models' class probabilities (N, K) on the
    same test images, in the same order. Predictions are the argmax of each."""
    cfg = config or GateConfig()
    k = len(classes)
    y_true, ref_prob, ref_pred = validate(y_true, k, reference_prob)
    _, art_prob, art_pred = validate(y_true, k, artifact_prob)
    ref = class_rates(confusion_matrix(y_true, ref_pred, labels=np.arange(k)))
    art = class_rates(confusion_matrix(y_true, art_pred, labels=np.arange(k)))
    d_sens, d_spec = _paired_replicates(y_true, ref_pred, art_pred, k, cfg)
    verdicts = []
    for c in range(k):
        pos = y_true == c
        sens = _paired("sensitivity", pos, ref_pred == c, art_pred == c, ref.sensitivity[c], art.sensitivity[c],
                       d_sens[:, c], cfg.sensitivity_margin, cfg)
        spec = _paired("specificity", ~pos, ref_pred != c, art_pred != c, ref.specificity[c], art.specificity[c],
                       d_spec[:, c], cfg.specificity_margin, cfg)
        verdicts.append(ClassVerdict(classes[c], c, int(pos.sum()), sens, spec))
    ece = CalibrationCheck(expected_calibration_error(y_true, ref_prob), expected_calibration_error(y_true, art_prob),
                           cfg.max_ece_increase)
    return GateResult(verdicts, ece, cfg)


def _paired_replicates(y_true, ref_pred, art_pred, k: int, cfg: GateConfig) -> tuple[np.ndarray, np.ndarray]:
    """(B, K) bootstrap differences of sensitivity and specificity; one set of draws for both models."""
    d_sens, d_spec = [], []
    for w in stratified_weights(y_true, cfg.n_boot, cfg.seed):
        ref = class_rates(weighted_confusion(w, y_true, ref_pred, k))
        art = class_rates(weighted_confusion(w, y_true, art_pred, k))
        d_sens.append(art.sensitivity - ref.sensitivity)
        d_spec.append(art.specificity - ref.specificity)
    return np.concatenate(d_sens), np.concatenate(d_spec)


def _paired(metric: str, population: np.ndarray, ref_ok: np.ndarray, art_ok: np.ndarray, ref_value: float,
            art_value: float, replicates: np.ndarray, margin: float, cfg: GateConfig) -> PairedDiff:
    losses = np.flatnonzero(population & ref_ok & ~art_ok)
    gains = np.flatnonzero(population & ~ref_ok & art_ok)
    n, discordant = int(population.sum()), len(losses) + len(gains)
    p = binomtest(len(losses), discordant, 0.5).pvalue if discordant else 1.0
    diff = interval(art_value - ref_value, replicates, cfg.confidence, "" if n else "no images to measure it on")
    if not n:
        outcome, reason = Outcome.INCONCLUSIVE, "has no test images to judge it on"
    elif diff.value < -margin and p < cfg.alpha:
        outcome, reason = Outcome.FAIL, f"loss {-diff.value:.3f} exceeds the margin {margin} (McNemar p = {p:.3g})"
    elif diff.lo >= -margin:
        outcome, reason = Outcome.PASS, "non-inferior within the margin"
    else:
        outcome, reason = Outcome.INCONCLUSIVE, f"interval reaches {diff.lo:+.3f}, beyond the margin -{margin}"
    more = _more_images(n, len(losses), len(gains), margin, cfg) if outcome is Outcome.INCONCLUSIVE and n else None
    if more is not None:
        whose = "of this class" if metric == "sensitivity" else "of other classes"
        reason += f"; about {more} more images {whose} would decide"
    return PairedDiff(metric, n, float(ref_value), float(art_value), diff, tuple(losses.tolist()),
                      tuple(gains.tolist()), float(p), outcome, reason, more)


def _more_images(n: int, losses: int, gains: int, margin: float, cfg: GateConfig) -> int | None:
    """Extra images at the observed discordance rates for the normal approximation of the paired
    difference to decide: its lower bound clearing -margin (pass) or, when the estimate is already beyond
    the margin, McNemar reaching alpha (fail). None when the rates cannot tell (estimate on the margin)."""
    d, disc = (gains - losses) / n, (gains + losses) / n
    var = disc - d * d  # per-image variance of the paired difference
    if d > -margin:
        gap, z = d + margin, norm.ppf(0.5 + cfg.confidence / 2)
    else:
        gap, z = -d, norm.ppf(1 - cfg.alpha / 2)
    if var <= 0 or gap <= 0:
        return None
    return max(1, math.ceil(z * z * var / (gap * gap)) - n)
