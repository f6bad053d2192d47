"""The three figures a clinical reader expects: reliability diagram, ROC curve per class, and the
confusion matrix normalised by row (row = true class, so the diagonal reads as each class's sensitivity).

Drawn on `matplotlib.figure.Figure` directly, not pyplot: no global backend or figure state, so they are
safe to call from a CLI, a test or a worker thread, and need no display.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, roc_curve

from edgekd.shared.clinical.calibration import ECE_BINS, expected_calibration_error, reliability_bins
from edgekd.shared.clinical.metrics import auc_point, validate


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def reliability_diagram(y_true, probs: Mapping[str, np.ndarray], path: str | Path, n_bins: int = ECE_BINS,
                        title: str = "") -> Path:
    """Accuracy against confidence per bin, one curve per entry of `probs` (e.g. "before": softmax(z),
    "after (T=1.8)": softmax(z / 1.8)), each labelled with its ECE; the diagonal is perfect calibration."""
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    for label, p in probs.items():
        y, p, _ = validate(y_true, np.shape(p)[1], y_prob=p)
        count, conf, acc = reliability_bins(y, p, n_bins)
        filled = count > 0
        ax.plot(conf[filled], acc[filled], marker="o", ms=4,
                label=f"{label} (ECE {expected_calibration_error(y, p, n_bins):.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy",
           title=title or f"Reliability diagram ({n_bins} bins)")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def roc_curves(y_true, y_prob, classes: list[str], path: str | Path, title: str = "") -> Path:
    """One-vs-rest ROC curve of every class present with others, AUC in the legend."""
    y, p, _ = validate(y_true, len(classes), y_prob=y_prob)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    for c, name in enumerate(classes):
        auc = auc_point(y == c, p[:, c])
        if np.isnan(auc):
            continue  # no curve without both positives and negatives
        fpr, tpr, _ = roc_curve(y == c, p[:, c])
        ax.plot(fpr, tpr, lw=1.2, label=f"{name} (AUC {auc:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity",
           title=title or "ROC curves (one class vs the rest)")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def confusion_matrix_plot(y_true, y_pred, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised heat map (fraction of each true class), raw counts in the cells."""
    n = len(classes)
    y, _, pred = validate(y_true, n, y_pred=y_pred)
    counts = confusion_matrix(y, pred, labels=np.arange(n))
    rows = counts.sum(1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    fig = Figure(figsize=(2.0 + 0.8 * n, 1.6 + 0.8 * n))
    ax = fig.subplots()
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix (rows sum to 1)")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{frac[i, j]:.2f}\n{counts[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if frac[i, j] > 0.5 else "black")
    return _save(fig, path)
