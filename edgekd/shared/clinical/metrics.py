"""Per-class clinical metrics with stratified-bootstrap 95 % intervals.

Point estimates come from scikit-learn (`confusion_matrix`, `roc_auc_score`). The B replicates cannot:
sklearn scores one sample per call, so B=1000 replicates of 10 classes would be 10,000 validated calls,
too slow for verify to run for every artifact. Replicates are weighted reductions over all rows at once
(`weighted_confusion`, `weighted_auc`) instead, and tests/test_clinical.py pins both to sklearn's
`sample_weight` results, so the two paths cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score

from edgekd.errors import EdgeKDError
from edgekd.shared.clinical.bootstrap import Estimate, interval, stratified_weights

#: why each per-class value can be undefined (its denominator is zero)
UNDEFINED = {
    "sensitivity": "no images of this class",
    "specificity": "no images of other classes",
    "ppv": "never predicted",
    "npv": "predicted for every image",
    "f1": "absent and never predicted",
    "auc": "needs images of this class and of others, and probabilities",
}
METRICS = tuple(UNDEFINED)  # the per-class columns, in report order
ZERO_WIDTH = "every replicate gave the same value; with few images that is not certainty"


@dataclass(frozen=True)
class Rates:
    """One-vs-rest rates per class, arrays of shape [..., K]; NaN where the denominator is zero."""

    sensitivity: np.ndarray
    specificity: np.ndarray
    ppv: np.ndarray
    npv: np.ndarray
    f1: np.ndarray


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def class_rates(cm: np.ndarray) -> Rates:
    """Rates from confusion matrices [..., K, K] (rows = true class, columns = predicted)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    fn = cm.sum(-1) - tp
    fp = cm.sum(-2) - tp
    tn = cm.sum((-2, -1))[..., None] - tp - fn - fp
    return Rates(ratio(tp, tp + fn), ratio(tn, tn + fp), ratio(tp, tp + fp), ratio(tn, tn + fn),
                 ratio(2 * tp, 2 * tp + fp + fn))


def nanmean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over the defined entries; NaN (without numpy's all-NaN warning) where none is."""
    ok = ~np.isnan(x)
    return ratio(np.where(ok, x, 0).sum(axis), ok.sum(axis))


def weighted_confusion(w: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices (B, K, K) of B weightings (B, N) of the same images: one bincount."""
    b = w.shape[0]
    flat = (np.arange(b)[:, None] * (k * k) + (y_true * k + y_pred)).ravel()
    return np.bincount(flat, weights=w.ravel(), minlength=b * k * k).reshape(b, k, k)


def weighted_auc(w: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC-AUC (B,) of B weightings: the Mann-Whitney probability that a positive outscores a
    negative, ties counting one half (what `roc_auc_score` computes), over the distinct score levels."""
    levels, inv = np.unique(score, return_inverse=True)
    b, n_lv = w.shape[0], len(levels)
    flat = (np.arange(b)[:, None] * n_lv + inv).ravel()

    def per_level(mask: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=(w * mask).ravel(), minlength=b * n_lv).reshape(b, n_lv)

    pos, neg = per_level(positive), per_level(~positive)
    below = np.cumsum(neg, axis=1) - neg
    return ratio((pos * (below + 0.5 * neg)).sum(1), pos.sum(1) * neg.sum(1))


def auc_point(positive: np.ndarray, score: np.ndarray) -> float:
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


def _class_indices(a, num_classes: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or a.size == 0:
        raise EdgeKDError(f"no {what} to score; fix: check the test manifest is not empty")
    if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= num_classes:
        raise EdgeKDError(f"{what} must be class indices in 0..{num_classes - 1} ({num_classes} classes); "
                          "fix: pass integer labels that match the model's class list")
    return a.astype(np.int64)


def validate(y_true, num_classes: int, y_prob=None, y_pred=None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(labels, probabilities or None, predictions), checked; predictions default to argmax(prob)."""
    y_true = _class_indices(y_true, num_classes, "labels")
    if y_prob is not None:
        y_prob = np.asarray(y_prob, dtype=np.float64)
        if y_prob.shape != (y_true.size, num_classes):
            raise EdgeKDError(f"probabilities have shape {y_prob.shape}, expected {(y_true.size, num_classes)}; "
                              "fix: pass one row of class probabilities per image")
    if y_pred is None:
        if y_prob is None:
            raise EdgeKDError("need predictions or probabilities; fix: pass y_pred or y_prob")
        y_pred = y_prob.argmax(1)
    y_pred = _class_indices(y_pred, num_classes, "predictions")
    if y_pred.shape != y_true.shape:
        raise EdgeKDError(f"{y_pred.size} predictions for {y_true.size} labels; fix: pass one per image")
    return y_true, y_prob, y_pred


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    support: int  # test images of this class
    sensitivity: Estimate  # recall
    specificity: Estimate
    ppv: Estimate  # precision
    npv: Estimate
    f1: Estimate
    auc: Estimate  # one-vs-rest ROC-AUC

    def to_dict(self) -> dict:
        return {"support": self.support, **{m: getattr(self, m).to_dict() for m in METRICS}}


@dataclass(frozen=True)
class ClinicalMetrics:
    n: int
    per_class: list[ClassMetrics]
    accuracy: Estimate
    balanced_accuracy: Estimate  # mean sensitivity over the classes present
    macro_auc: Estimate  # mean one-vs-rest AUC over the classes where it is defined
    n_boot: int
    seed: int
    confidence: float

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "interval": {"method": "stratified bootstrap, percentile", "n_boot": self.n_boot,
                         "seed": self.seed, "confidence": self.confidence},
            "accuracy": self.accuracy.to_dict(),
            "balanced_accuracy": self.balanced_accuracy.to_dict(),
            "macro_auc": self.macro_auc.to_dict(),
            "per_class": {c.name: c.to_dict() for c in self.per_class},
        }

    def to_markdown(self) -> str:
        """The per-class table of the model card and report, with a footnote per undefined value."""
        head = "| class | n | sensitivity | specificity | PPV | NPV | F1 | AUC |\n|---|---:|" + "---:|" * len(METRICS)
        rows, notes = [], []
        for c in self.per_class:
            cells = [getattr(c, m) for m in METRICS]
            rows.append(f"| {c.name} | {c.support} | " + " | ".join(e.format() for e in cells) + " |")
            notes += [f"- {c.name} {m}: {e.note}" for m, e in zip(METRICS, cells) if e.note]
        pct = round(100 * self.confidence)
        summary = (f"Accuracy {self.accuracy.format()}, balanced accuracy {self.balanced_accuracy.format()}, "
                   f"macro-AUC {self.macro_auc.format()}; {self.n} images. [{pct} % interval: stratified "
                   f"bootstrap, B={self.n_boot}, seed {self.seed}.]")
        return "\n".join([head, *rows, "", summary, *([""] + notes if notes else [])]) + "\n"


def clinical_metrics(y_true, classes: list[str], *, y_prob=None, y_pred=None, n_boot: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> ClinicalMetrics:
    """Per-class and overall metrics of one model on one labelled set, each with its interval.

    `y_prob` (N, K) gives AUCs and, when `y_pred` is None, the predictions (argmax); `y_pred` alone
    scores hard labels (AUCs are then n/a). Undefined values are NaN with a note, never an error.
    """
    k = len(classes)
    y_true, y_prob, y_pred = validate(y_true, k, y_prob, y_pred)
    point = class_rates(confusion_matrix(y_true, y_pred, labels=np.arange(k)))
    point_auc = np.array([auc_point(y_true == c, y_prob[:, c]) if y_prob is not None else np.nan for c in range(k)])
    rep, rep_acc, rep_auc = _replicates(y_true, y_pred, y_prob, k, n_boot, seed)
    support = np.bincount(y_true, minlength=k)

    def est(m: str, c: int) -> Estimate:
        value, reps = (point_auc[c], rep_auc[:, c]) if m == "auc" else (getattr(point, m)[c], getattr(rep, m)[:, c])
        e = interval(value, reps, confidence, UNDEFINED[m] if np.isnan(value) else "")
        # a rate of 0 or 1 (sensitivity 8/8) is the same in every replicate: say so, lest [1, 1] read as certainty
        return replace(e, note=ZERO_WIDTH) if e.defined and e.lo == e.hi and not e.note else e

    per_class = [ClassMetrics(classes[c], int(support[c]), **{m: est(m, c) for m in METRICS}) for c in range(k)]
    return ClinicalMetrics(
        int(y_true.size), per_class,
        accuracy=interval(float(np.mean(y_true == y_pred)), rep_acc, confidence),
        balanced_accuracy=interval(float(nanmean(point.sensitivity)), nanmean(rep.sensitivity), confidence),
        macro_auc=interval(float(nanmean(point_auc)), nanmean(rep_auc), confidence,
                           "" if y_prob is not None else "no probabilities given"),
        n_boot=n_boot, seed=seed, confidence=confidence)


def _replicates(y_true, y_pred, y_prob, k: int, n_boot: int, seed: int) -> tuple[Rates, np.ndarray, np.ndarray]:
    """Bootstrap replicates: rates (B, K) each, accuracy (B,), AUC (B, K) (NaN without probabilities)."""
    rates, acc, auc = [], [], []
    for w in stratified_weights(y_true, n_boot, seed):
        cm = weighted_confusion(w, y_true, y_pred, k)
        rates.append(class_rates(cm))
        acc.append(ratio(np.trace(cm, axis1=1, axis2=2), cm.sum((1, 2))))
        auc.append(np.stack([weighted_auc(w, y_true == c, y_prob[:, c]) if y_prob is not None
                             else np.full(len(w), np.nan) for c in range(k)], 1))
    stacked = Rates(**{f.name: np.concatenate([getattr(r, f.name) for r in rates]) for f in fields(Rates)})
    return stacked, np.concatenate(acc), np.concatenate(auc)
