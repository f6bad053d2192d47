"""Torch-free saliency primitives both sides use: occlusion maps and how to compare two maps.

Why occlusion (and not RISE or Score-CAM) for artifacts: an artifact exposes only its logits, so
the map must come from input perturbations. Occlusion slides one mean-coloured square over a
fixed grid: deterministic (FP32 and INT8 see the SAME perturbations, so any difference between
their maps is the artifact's, not Monte-Carlo noise as with RISE's random masks), cheap (grid^2 + 1
forward passes, 50 at the default 7x7 grid) and it needs no internal activations. Used by
`edgekd explain --artifact`, by `edgekd verify`'s explanation drift, and by the faithfulness
scores in `edgekd.explain.faithfulness`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgekd.shared.probs import softmax

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class OcclusionConfig:
    window: float = 0.25  # side of the occluding square, as a fraction of the input side
    stride: float = 0.125  # step between squares, same unit
    fill: float = 0.0  # value in the preprocessed space: 0 = the normalisation mean colour
    batch_size: int = 32


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets covering 0..size, the last flush with the edge."""
    last = size - window
    return sorted({*range(0, last + 1, stride), last})


def _boxes(h: int, w: int, cfg: OcclusionConfig) -> list[tuple[int, int, int, int]]:
    wh, ww = max(1, round(h * cfg.window)), max(1, round(w * cfg.window))
    sh, sw = max(1, round(h * cfg.stride)), max(1, round(w * cfg.stride))
    return [(y, x, wh, ww) for y in _starts(h, wh, sh) for x in _starts(w, ww, sw)]


def occlusion_maps(predict: Predict, x: np.ndarray, targets: np.ndarray | None = None,
                   cfg: OcclusionConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps (B, H, W), probs (B, K)): map = drop of the target class probability when a
    square covering the pixel is filled, averaged over the squares covering it."""
    cfg = cfg or OcclusionConfig()
    probs = softmax(predict(x))
    targets = probs.argmax(1) if targets is None else np.asarray(targets)
    _, _, h, w = x.shape
    boxes = _boxes(h, w, cfg)
    cover = np.zeros((h, w))
    for y, xx, bh, bw in boxes:
        cover[y : y + bh, xx : xx + bw] += 1
    maps = np.zeros((len(x), h, w))
    for i, img in enumerate(x):
        copies = np.repeat(img[None], len(boxes), axis=0)
        for k, (y, xx, bh, bw) in enumerate(boxes):
            copies[k, :, y : y + bh, xx : xx + bw] = cfg.fill
        p = np.concatenate([softmax(predict(copies[j : j + cfg.batch_size]))[:, targets[i]]
                            for j in range(0, len(copies), cfg.batch_size)])
        for drop, (y, xx, bh, bw) in zip(probs[i, targets[i]] - p, boxes):
            maps[i, y : y + bh, xx : xx + bw] += drop
    return (maps / cover).astype(np.float32), probs


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    _, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inv.ravel()]


def rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' pixels (1 = same ordering of evidence)."""
    ra, rb = _ranks(a.ravel()), _ranks(b.ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float(np.array_equal(a, b))


def top_iou(a: np.ndarray, b: np.ndarray, frac: float = 0.1) -> float:
    """IoU of the two maps' top-`frac` pixels (where the strongest evidence is)."""
    k = max(1, int(round(frac * a.size)))
    ta = set(np.argsort(-a.ravel(), kind="stable")[:k].tolist())
    tb = set(np.argsort(-b.ravel(), kind="stable")[:k].tolist())
    return len(ta & tb) / len(ta | tb)
