"""The operating point of an export: one threshold on a positive class (COVID, glioma), chosen ONCE on
held-out validation images with the PyTorch reference's calibrated probabilities, then carried by every
artifact and applied by `edgekd predict`.

Which images: the run's `data/val.json` (training-split images outside the trained subset, the ones
temperature scaling was fitted on); without one, the INT8 search's validation slice (`build_validation`:
training split minus the calibration images). Never the test split: the test sensitivity at the threshold
is what verify reports, and a threshold tuned on it would flatter that figure. The threshold goes into the
reference ONNX's metadata before any target is built from it, so every artifact copies it the way it copies
the temperature. The statistics are `edgekd.shared.clinical.operating_point`'s; this module only chooses
the images and feeds them through the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgekd.errors import EdgeKDError
from edgekd.export.batches import iter_batches, manifest_items
from edgekd.export.calibration import DEFAULT_VAL_SIZE, build_validation
from edgekd.export.metadata import update_onnx_metadata
from edgekd.export.runner import Predictor
from edgekd.shared.clinical.operating_point import OperatingPoint, check_request, choose_threshold
from edgekd.shared.probs import softmax

if TYPE_CHECKING:
    from edgekd.export.int8_accuracy import ValidationSet
    from edgekd.export.onnx_export import OnnxExport
    from edgekd.export.source import RunSource


@dataclass(frozen=True)
class PointRequest:
    """`--positive-class NAME --target-sensitivity S`."""

    positive_class: str
    target_sensitivity: float = 0.95

    def check(self, classes: list[str]) -> None:
        """Fail on a class the model does not know before any image is read."""
        check_request(list(classes), self.positive_class, self.target_sensitivity)


@dataclass(frozen=True)
class ChosenPoint:
    point: OperatingPoint
    validation: str  # which images the threshold was chosen on, for the report

    def to_dict(self) -> dict:
        return {**self.point.to_dict(), "validation": self.validation}


def choose_point(req: PointRequest, src: RunSource, reference: Predictor, int8_val: ValidationSet | None = None,
                 calibration_paths: list[str] | None = None, batch_size: int = 32) -> ChosenPoint:
    """The threshold for `req` on the run's validation images. `int8_val`: the slice the INT8 search already
    scored with this reference (reused, not recomputed); `calibration_paths`: images a fresh slice must avoid."""
    labels, probs, where = _validation_probs(src, reference, int8_val, calibration_paths or [], batch_size)
    point = choose_threshold(labels, probs, list(src.meta.classes), req.positive_class, req.target_sensitivity)
    return ChosenPoint(point, where)


def verify_point(req: PointRequest | None, carried: set[OperatingPoint], src: RunSource, reference: Predictor,
                 batch_size: int = 32) -> ChosenPoint | None:
    """`edgekd verify`'s operating point: chosen on validation for `--positive-class`, else the one the
    artifacts carry (the threshold `predict` applies to them), else none."""
    if req is not None:
        return choose_point(req, src, reference, batch_size=batch_size)
    if len(carried) > 1:
        raise EdgeKDError("the artifacts carry different operating points; fix: verify them one at a time, or pass "
                          "--positive-class to evaluate them all at one threshold")
    return ChosenPoint(next(iter(carried)), "the export's validation images (carried by the artifacts)") if carried else None


def _validation_probs(src: RunSource, reference: Predictor, int8_val: ValidationSet | None,
                      calibration_paths: list[str], batch_size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(labels, reference probabilities, where they came from)."""
    pp = src.meta.preprocess
    if src.val_manifest is not None:
        items = manifest_items(src.val_manifest, src.meta.classes)
        logits = np.concatenate([reference.predict(x) for x, _ in iter_batches(items, pp, batch_size)])
        return np.array([y for _, y in items]), softmax(logits), f"{len(items)} validation images of {src.val_manifest}"
    if src.train_manifest is None:
        raise EdgeKDError(f"no validation images to choose the threshold on: the run has neither data/val.json nor "
                          "data/train.json; fix: export a run trained with val_limit (it writes data/val.json)")
    if int8_val is None:
        images = build_validation(str(src.train_manifest), pp, DEFAULT_VAL_SIZE, calibration_paths)
        logits = np.concatenate([reference.predict(images.x[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    else:
        images, logits = int8_val.images, int8_val.ref_logits
    outside = ", outside the INT8 calibration images" if calibration_paths or int8_val is not None else ""
    # train.json is the subset the student was fitted on: its probabilities there are optimistic
    return images.labels, softmax(logits), (
        f"{len(images)} training images of {src.train_manifest}{outside} (no data/val.json): the student "
        "trained on them, so the test sensitivity may fall short of the target")


def stamp(onnx: OnnxExport, point: OperatingPoint) -> None:
    """Add the point to the reference ONNX files' metadata: every target copies its metadata from them."""
    for path in (onnx.dynamic, onnx.static):
        if path is not None:
            update_onnx_metadata(path, {"operating_point": point.to_dict()})
