"""Operating point: a probability threshold on one positive class (COVID, glioma) chosen for a target
sensitivity on validation images, then applied unchanged to the test split and to every artifact.

The threshold is the highest one whose validation sensitivity reaches the target: of all thresholds that
find enough positives, it raises the fewest false alarms there.

`OperatingPoint` and `apply_threshold` are what `edgekd predict` applies on a runtime-only install (numpy,
no scikit-learn), so scikit-learn and `metrics` are imported inside the functions that compute statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgekd.errors import EdgeKDError
from edgekd.shared.clinical.bootstrap import Estimate, interval, stratified_weights


@dataclass(frozen=True)
class OperatingPoint:
    """What travels in the artifact metadata and what `predict` applies."""

    positive_class: str
    index: int  # of positive_class in the model's class list
    threshold: float  # positive when P(positive_class) >= threshold
    target_sensitivity: float
    val_sensitivity: float
    val_specificity: float
    n_val: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OperatingPoint":
        return cls(**d)


@dataclass(frozen=True)
class OperatingPointMetrics:
    point: OperatingPoint
    n_positive: int
    n_negative: int
    sensitivity: Estimate
    specificity: Estimate

    def to_dict(self) -> dict:
        return {"point": self.point.to_dict(), "n_positive": self.n_positive, "n_negative": self.n_negative,
                "sensitivity": self.sensitivity.to_dict(), "specificity": self.specificity.to_dict()}


def check_request(classes: list[str], positive_class: str, target_sensitivity: float) -> int:
    """The index of `positive_class`; a name the model does not know, or a target outside (0, 1], is a user
    error, raised before any image is read."""
    if positive_class not in classes:
        raise EdgeKDError(f"positive class {positive_class!r} is not one of {classes}; fix: pass one of those names")
    if not 0 < target_sensitivity <= 1:
        raise EdgeKDError(f"target sensitivity must be in (0, 1], got {target_sensitivity}; fix: e.g. 0.95")
    return classes.index(positive_class)


def choose_threshold(y_true, y_prob, classes: list[str], positive_class: str,
                     target_sensitivity: float = 0.95) -> OperatingPoint:
    """The threshold on P(positive_class) for `target_sensitivity` on these (validation) images."""
    from sklearn.metrics import roc_curve

    from edgekd.shared.clinical.metrics import validate

    idx = check_request(classes, positive_class, target_sensitivity)
    y_true, y_prob, _ = validate(y_true, len(classes), y_prob=y_prob)
    pos = y_true == idx
    if pos.all() or not pos.any():
        raise EdgeKDError(f"the validation images need both {positive_class!r} and other classes to choose a "
                          "threshold; fix: use a larger validation split")
    fpr, tpr, thr = roc_curve(pos, y_prob[:, idx], drop_intermediate=False)
    i = int(np.argmax(tpr >= target_sensitivity))  # tpr rises as the threshold falls: the first is the highest
    return OperatingPoint(positive_class, idx, float(thr[i]), target_sensitivity, float(tpr[i]),
                          float(1 - fpr[i]), int(y_true.size))


def apply_threshold(y_prob, point: OperatingPoint) -> np.ndarray:
    """Boolean (N,): is the positive class called for each image."""
    return np.asarray(y_prob)[:, point.index] >= point.threshold


def evaluate_operating_point(y_true, y_prob, point: OperatingPoint, n_boot: int = 1000, seed: int = 0,
                             confidence: float = 0.95) -> OperatingPointMetrics:
    """Sensitivity and specificity at the chosen threshold, with intervals from the same stratified
    bootstrap as every other metric (strata = the true classes, not just positive/negative)."""
    from sklearn.metrics import confusion_matrix

    from edgekd.shared.clinical.metrics import class_rates, validate, weighted_confusion

    y_true, y_prob, _ = validate(y_true, np.shape(y_prob)[1], y_prob=y_prob)
    pos = (y_true == point.index).astype(np.int64)
    called = apply_threshold(y_prob, point).astype(np.int64)
    rates = class_rates(confusion_matrix(pos, called, labels=[0, 1]))
    reps = [class_rates(weighted_confusion(w, pos, called, 2)) for w in stratified_weights(y_true, n_boot, seed)]
    sens = np.concatenate([r.sensitivity[:, 1] for r in reps])
    spec = np.concatenate([r.specificity[:, 1] for r in reps])
    n_pos = int(pos.sum())
    return OperatingPointMetrics(
        point, n_pos, int(pos.size - n_pos),
        interval(rates.sensitivity[1], sens, confidence, "" if n_pos else "no positive images"),
        interval(rates.specificity[1], spec, confidence, "" if n_pos < pos.size else "no negative images"))
