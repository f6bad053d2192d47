"""Calibration: does a probability of 0.9 mean right 9 times in 10? Temperature scaling, ECE, Brier, NLL.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T fitted on held-out labelled
images: it leaves every prediction (argmax) unchanged, so accuracy and the gate's flips are untouched,
and a single scalar is what an exported graph and its metadata can carry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import brier_score_loss, log_loss

from edgekd.errors import EdgeKDError
from edgekd.shared.clinical.metrics import validate
from edgekd.shared.probs import softmax

ECE_BINS = 15  # Guo et al.'s choice, so figures compare with the literature
T_BOUNDS = (0.05, 20.0)  # wider than any network we have seen needs; keeps the search away from 0


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """T > 0 minimising the NLL of softmax(logits / T) on held-out images (never the test split).

    Searched over log T: the NLL is smooth and unimodal there, and T stays positive by construction.
    """
    logits = np.asarray(logits, np.float64)
    y_true, _, _ = validate(y_true, logits.shape[1], y_prob=logits)
    rows = np.arange(len(y_true))

    def nll_at(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y_true].mean())

    res = minimize_scalar(nll_at, bounds=np.log(T_BOUNDS), method="bounded", options={"xatol": 1e-6})
    if not res.success:
        raise EdgeKDError(f"temperature fit did not converge ({res.message}); fix: use calibration=none")
    return float(np.exp(res.x))


def reliability_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = ECE_BINS):
    """Per equal-width confidence bin ((i-1)/M, i/M]: (count, mean confidence, accuracy) of the
    top-1 predictions; empty bins have NaN means. Shared by the ECE and the reliability diagram."""
    conf = y_prob.max(1)
    correct = (y_prob.argmax(1) == y_true).astype(float)
    b = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (count, np.bincount(b, conf, n_bins) / count, np.bincount(b, correct, n_bins) / count)


def expected_calibration_error(y_true, y_prob, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: the image-weighted mean |accuracy - confidence| over the bins."""
    y_true, y_prob, _ = validate(y_true, np.shape(y_prob)[1], y_prob=y_prob)
    count, conf, acc = reliability_bins(y_true, y_prob, n_bins)
    filled = count > 0
    return float((count[filled] * np.abs(acc[filled] - conf[filled])).sum() / count.sum())


@dataclass(frozen=True)
class CalibrationScores:
    ece: float  # 15 equal-width bins, top label
    brier: float  # multiclass: mean over images of sum over classes (p - onehot)^2, in [0, 2]
    nll: float  # mean negative log-likelihood of the true class

    @classmethod
    def of(cls, y_true, y_prob) -> "CalibrationScores":
        y_true, y_prob, _ = validate(y_true, np.shape(y_prob)[1], y_prob=y_prob)
        labels = np.arange(y_prob.shape[1])
        return cls(expected_calibration_error(y_true, y_prob),
                   float(brier_score_loss(y_true, y_prob, labels=labels, scale_by_half=False)),
                   float(log_loss(y_true, y_prob, labels=labels)))


@dataclass(frozen=True)
class CalibrationReport:
    temperature: float
    n_fit: int  # held-out images T was fitted on
    before: CalibrationScores  # on the evaluation images, T = 1
    after: CalibrationScores  # on the evaluation images, T = temperature

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        rows = [f"| {label} | {getattr(self.before, name):.4f} | {getattr(self.after, name):.4f} |"
                for label, name in (("ECE (15 bins)", "ece"), ("Brier", "brier"), ("NLL", "nll"))]
        return (f"Temperature scaling: T = {self.temperature:.3f}, fitted on {self.n_fit} held-out images.\n\n"
                "| | before | after |\n|---|---:|---:|\n" + "\n".join(rows) + "\n")


def calibrate(fit_logits, fit_labels, eval_logits, eval_labels) -> CalibrationReport:
    """Fit T on (fit_logits, fit_labels), score before/after on (eval_logits, eval_labels)."""
    t = fit_temperature(fit_logits, fit_labels)
    return CalibrationReport(t, len(fit_labels), CalibrationScores.of(eval_labels, softmax(eval_logits)),
                             CalibrationScores.of(eval_labels, softmax(eval_logits, t)))
