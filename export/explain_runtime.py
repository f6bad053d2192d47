"""Torch-free explanations of an exported artifact, and explanation drift in verify.

The occlusion maps themselves (and why occlusion) are in `edgekd.shared.saliency`; this module
scores them through a runtime: `explain_artifact` for `edgekd explain --artifact`, `DriftProbe`
for `edgekd verify` (each artifact's maps against the PyTorch FP32 model's, same images, same
target class).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.export.runner import Predictor
from edgekd.shared.saliency import OcclusionConfig, occlusion_maps, rank_corr, top_iou


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
    from edgekd.export.runner import RunnerConfig

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


def main(argv: list[str] | None = None) -> int:
    """`edgekd explain --artifact MODEL IMAGES...`: the torch-free half of the explain verb."""
    from edgekd.errors import EdgeKDError
    from edgekd.shared.explain_args import images_to_explain, parser

    a = parser().parse_args(argv)
    if a.artifact is None:
        raise EdgeKDError("this half explains artifacts; fix: pass --artifact MODEL.onnx (CAMs of a run: --run RUN)")
    if a.method not in (None, "occlusion"):
        raise EdgeKDError(f"--method {a.method} needs the torch model; fix: use --run RUN for CAMs, or "
                          "--method occlusion on an artifact")
    images = images_to_explain(a)
    out = a.out or a.artifact.parent / "explain" / a.artifact.name.replace(".", "_")
    gallery = explain_artifact(a.artifact, images, out, threads=a.threads)
    print(f"{len(images)} images -> {gallery} (+ gallery.png, overlays/, explanations.json)")
    return 0
