"""Deletion / insertion AUC (Petsiuk et al., RISE 2018): which saliency map to trust.

Why: a heat map can look plausible and still not be what the model uses. Deletion removes the
pixels the map ranks highest first and tracks the explained class's probability (a faithful
map makes it fall fast: LOW area under the curve); insertion reveals them first onto a blurred
canvas (a faithful map makes it rise fast: HIGH area). Torch-free: any `predict(batch) ->
logits` works, so PyTorch models and exported artifacts are scored the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from edgekd.shared.probs import softmax
from edgekd.shared.saliency import Predict


@dataclass
class FaithfulnessConfig:
    steps: int = 16  # the curve has steps + 1 points, from 0 % to 100 % of the pixels
    blur_factor: int = 8  # insertion canvas: the image shrunk by this factor and blown up again
    batch_size: int = 34


@dataclass
class Curves:
    deletion_auc: float
    insertion_auc: float


def blurred(x: np.ndarray, factor: int) -> np.ndarray:
    """CHW image -> the same image without detail (RISE's insertion canvas)."""
    c, h, w = x.shape
    small = (max(1, w // factor), max(1, h // factor))
    return np.stack([np.asarray(Image.fromarray(ch.astype(np.float32), "F").resize(small, Image.BOX)
                                .resize((w, h), Image.BILINEAR)) for ch in x]).astype(np.float32)


def _auc(scores: np.ndarray) -> float:
    """Area under a curve sampled at equal steps over [0, 1] (trapezoid rule)."""
    return float((scores[:-1] + scores[1:]).sum() / (2 * (len(scores) - 1)))


def curves(predict: Predict, x: np.ndarray, cam: np.ndarray, target: int,
           cfg: FaithfulnessConfig | None = None) -> Curves:
    """Deletion and insertion AUC of one CHW image `x` and its HxW map `cam` for class `target`."""
    cfg = cfg or FaithfulnessConfig()
    order = np.argsort(-cam.ravel(), kind="stable")
    canvas, n = blurred(x, cfg.blur_factor), cam.size
    deleted, inserted = [], []
    for k in np.linspace(0, n, cfg.steps + 1).round().astype(int):
        mask = np.zeros(n, bool)
        mask[order[:k]] = True
        mask = mask.reshape(cam.shape)[None]
        deleted.append(np.where(mask, 0.0, x))  # 0 = the normalisation mean colour
        inserted.append(np.where(mask, x, canvas))
    batch = np.stack(deleted + inserted).astype(np.float32)
    p = np.concatenate([softmax(predict(batch[i : i + cfg.batch_size]))[:, target]
                        for i in range(0, len(batch), cfg.batch_size)])
    return Curves(_auc(p[: cfg.steps + 1]), _auc(p[cfg.steps + 1 :]))
