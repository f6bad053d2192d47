"""Torch-free explanations of an exported artifact: occlusion maps scored by the runtime.

Why occlusion (and not RISE or Score-CAM): an artifact exposes only its logits, so the map
must come from input perturbations. Occlusion slides one mean-coloured square over a fixed
grid: deterministic (FP32 and INT8 see the SAME perturbations, so any difference between
their maps is the artifact's, not Monte-Carlo noise as with RISE's random masks), cheap
(grid^2 + 1 forward passes, 50 at the default 7x7 grid, vs thousands of RISE masks) and it
needs no internal activations (Score-CAM's masks come from a hidden layer the runtime does
not return). The same maps measure explanation drift in `edgekd verify`: each artifact's
maps against the PyTorch FP32 model's maps, same images, same target class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgekd.export.verify import Predictor

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class OcclusionConfig:
    window: float = 0.25  # side of the occluding square, as a fraction of the input side
    stride: float = 0.125  # step between squares, same unit
    fill: float = 0.0  # value in the preprocessed space: 0 = the normalisation mean colour
    batch_size: int = 32


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


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


@dataclass
class Drift:
    rank_corr: float  # mean Spearman rho vs the reference maps
    top_iou: float  # mean IoU of the top-10 % regions
    n: int


class DriftProbe:
    """Collects a fixed sample of the verify stream, then compares each artifact's occlusion
    maps with the reference's (targets = the reference's top-1, so both explain one class)."""

    def __init__(self, reference: Predictor, images: int, cfg: OcclusionConfig | None = None):
        self.reference, self.images, self.cfg = reference, images, cfg or OcclusionConfig()
        self._x: list[np.ndarray] = []
        self._ref: tuple[np.ndarray, np.ndarray] | None = None

    def take(self, x: np.ndarray) -> None:
        have = sum(len(c) for c in self._x)
        if have < self.images:
            self._x.append(np.asarray(x[: self.images - have], np.float32))

    def measure(self, artifact: Predictor) -> Drift:
        x = np.concatenate(self._x)
        if self._ref is None:
            ref_maps, probs = occlusion_maps(self.reference.predict, x, cfg=self.cfg)
            self._ref = (ref_maps, probs.argmax(1))
        ref_maps, targets = self._ref
        maps, _ = occlusion_maps(artifact.predict, x, targets, self.cfg)
        return Drift(float(np.mean([rank_corr(r, m) for r, m in zip(ref_maps, maps)])),
                     float(np.mean([top_iou(r, m) for r, m in zip(ref_maps, maps)])), len(x))


def explain_artifact(artifact: str | Path, images: list[str], out: Path, cfg: OcclusionConfig | None = None,
                     threads: int | None = None) -> Path:
    """Occlusion maps of `artifact` on `images` -> gallery under `out` (returns gallery.md)."""
    from tqdm import tqdm

    from edgekd.shared.render import GalleryRow, Panel, denormalize, write_gallery
    from edgekd.export.predict import Classifier
    from edgekd.export.runtimes import RunnerConfig

    clf = Classifier(artifact, RunnerConfig(threads=threads))
    rows = []
    for path in tqdm(images, desc="explain (occlusion)", unit="image"):
        x = clf.preprocess([path])
        maps, probs = occlusion_maps(clf.runner.predict, x, cfg=cfg)
        top = int(probs[0].argmax())
        rows.append(GalleryRow(path, denormalize(x[0], clf.pp.mean, clf.pp.std),
                               [Panel(Path(artifact).name, clf.classes[top], float(probs[0, top]), maps[0])]))
    notes = ["- Method: occlusion scored by the artifact through its runtime (no torch): a square of the mean "
             "colour slides over the image; red = covering it lowers the predicted class's probability most."]
    return write_gallery(rows, out, f"What {Path(artifact).name} looks at (occlusion)", notes)
