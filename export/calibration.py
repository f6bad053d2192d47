"""The calibration set for INT8: a class-stratified subset of the TRAINING manifest.

Why: post-training quantization picks activation ranges from these images; they must look
like deployment inputs (same preprocessing as serving, every class represented) and must
never be test images (verify would be optimistic). Default 300 images or the whole split;
fewer is allowed with a warning because ranges from a handful of images clip real inputs.
Preprocessing is `edgekd.shared.preprocess.preprocess_numpy`, the same function `predict` uses.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgekd.export import contract
from edgekd.export.batches import load_batch

DEFAULT_CALIB_SIZE = 300
DEFAULT_VAL_SIZE = 2000  # the accuracy-aware INT8 search's slice (`build_validation`)


class CalibrationWarning(UserWarning):
    """Calibration set smaller than recommended."""


@dataclass
class CalibrationConfig:
    size: int = DEFAULT_CALIB_SIZE
    seed: int = 0


@dataclass
class CalibrationSet:
    """Preprocessed float32 NCHW images (+ labels, only for reporting)."""

    x: np.ndarray
    labels: np.ndarray
    paths: list[str]
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for i in range(0, len(self.x), batch_size):
            yield self.x[i : i + batch_size]


def stratified_subset(items: list[tuple[str, int]], size: int, seed: int = 0) -> list[tuple[str, int]]:
    """Up to `size` items, each class in proportion to its share (>= 1 each when size allows).

    Each class is shuffled and its items get fractional ranks (k + 0.5) / n_class; taking the
    lowest ranks across classes gives proportional allocation without rounding bookkeeping.
    """
    if size >= len(items):
        return list(items)
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[tuple[str, int]]] = {}
    for it in items:
        by_class.setdefault(int(it[1]), []).append(it)
    ranked: list[tuple[float, int, tuple[str, int]]] = []
    for label, group in sorted(by_class.items()):
        order = rng.permutation(len(group))
        n = len(group)
        ranked += [((k + 0.5) / n, label, group[i]) for k, i in enumerate(order)]
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in ranked[:size]]


def _manifest_items(manifest_path: str | Path) -> list[tuple[str, int]]:
    return [(str(p), int(l)) for p, l in contract.load_manifest(manifest_path).items]


def refuse_test_overlap(calib_manifest: str | Path, test_manifest: str | Path | None) -> None:
    """INT8 ranges and the accuracy-aware search must never see a test image: verify would
    then grade the quantizer on data it was tuned on. Any shared item is an error."""
    if test_manifest is None:
        return
    from edgekd.errors import EdgeKDError

    test = {p for p, _ in _manifest_items(test_manifest)}
    shared = sorted({p for p, _ in _manifest_items(calib_manifest)} & test)
    if shared:
        raise EdgeKDError(
            f"calibration manifest {calib_manifest} shares {len(shared)} image(s) with the test manifest "
            f"{test_manifest} (e.g. {shared[0]}); pass --calib-data with training images only (default: RUN/data/train.json)")


def build_calibration(manifest_path: str, preprocess: dict, cfg: CalibrationConfig | None = None) -> CalibrationSet:
    """Load + preprocess the stratified subset of the manifest at `manifest_path`."""
    cfg = cfg or CalibrationConfig()
    items = _manifest_items(manifest_path)
    chosen = stratified_subset(items, cfg.size, cfg.seed)
    notes = []
    if len(chosen) < DEFAULT_CALIB_SIZE:
        msg = (
            f"calibration uses {len(chosen)} images (< {DEFAULT_CALIB_SIZE} recommended"
            + (f"; the training split has only {len(items)}" if len(items) < cfg.size else "")
            + "): INT8 activation ranges may clip real inputs"
        )
        warnings.warn(msg, CalibrationWarning, stacklevel=2)
        notes.append(msg)
    x = load_batch([p for p, _ in chosen], preprocess)
    return CalibrationSet(x, np.array([l for _, l in chosen]), [p for p, _ in chosen], notes)


def build_validation(manifest_path: str, preprocess: dict, size: int, exclude: list[str], seed: int = 1) -> CalibrationSet:
    """The accuracy-aware INT8 search's validation slice: class-stratified TRAINING images that
    are not calibration images (quantization ranges are fitted on those, so they flatter INT8).
    Shares with calibration only when nothing else is left (noted)."""
    items = _manifest_items(manifest_path)
    taken = set(exclude)
    free = [it for it in items if it[0] not in taken] or items
    notes = []
    if free is items and taken:
        notes.append(f"validation slice shares images with calibration (training split has only {len(items)})")
    elif len(free) < size:
        notes.append(f"validation slice has {len(free)} images, not {size} (training split {len(items)} minus calibration): "
                     "the agreement target rises to make up for it")
    chosen = stratified_subset(free, size, seed)
    x = load_batch([p for p, _ in chosen], preprocess)
    return CalibrationSet(x, np.array([l for _, l in chosen]), [p for p, _ in chosen], notes)


def nncf_dataset(calib: CalibrationSet) -> Any:
    """`nncf.Dataset` of batch-1 samples (NNCF's subset_size counts samples)."""
    import nncf

    return nncf.Dataset([calib.x[i : i + 1] for i in range(len(calib))])
