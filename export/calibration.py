"""The calibration set for INT8: a class-stratified subset of the TRAINING manifest.

Why: post-training quantization picks activation ranges from these images; they must look
like deployment inputs (same preprocessing as serving, every class represented) and must
never be test images (verify would be optimistic). Default 300 images or the whole split;
fewer is allowed with a warning because ranges from a handful of images clip real inputs.
Preprocessing is `edgekd.preprocess.preprocess_numpy`, the same function `predict` uses.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from edgekd.export import contract

DEFAULT_CALIB_SIZE = 300


class CalibrationWarning(UserWarning):
    """Calibration set smaller than recommended."""


@dataclass
class CalibrationConfig:
    size: int = DEFAULT_CALIB_SIZE
    seed: int = 0
    batch_size: int = 16  # for ONNX Runtime's calibrator (dynamic-batch model)


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


def build_calibration(manifest_path: str, preprocess: dict, cfg: CalibrationConfig | None = None) -> CalibrationSet:
    """Load + preprocess the stratified subset of the manifest at `manifest_path`."""
    cfg = cfg or CalibrationConfig()
    manifest = contract.load_manifest(manifest_path)
    items = [(str(p), int(l)) for p, l in manifest.items]
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
    pcfg = contract.preprocess_config(preprocess)
    x = np.stack([contract.preprocess_numpy(contract.load_image(p), pcfg) for p, _ in chosen]).astype(np.float32)
    return CalibrationSet(x, np.array([l for _, l in chosen]), [p for p, _ in chosen], notes)


class OrtCalibrationReader:
    """`onnxruntime.quantization.CalibrationDataReader` over a CalibrationSet."""

    def __init__(self, calib: CalibrationSet, input_name: str, batch_size: int = 16):
        self._calib, self._name, self._bs = calib, input_name, batch_size
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = ({self._name: b} for b in self._calib.batches(self._bs))

    def __len__(self) -> int:
        return -(-len(self._calib) // self._bs)


def nncf_dataset(calib: CalibrationSet) -> Any:
    """`nncf.Dataset` of batch-1 samples (NNCF's subset_size counts samples)."""
    import nncf

    return nncf.Dataset([calib.x[i : i + 1] for i in range(len(calib))])
