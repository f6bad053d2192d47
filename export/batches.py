"""Preprocessed, labelled batches streamed from a manifest (torch-free).

Why: verify and bench read the medical test split exactly as serving does (the metadata's
preprocessing through `edgekd.shared.preprocess.preprocess_numpy`) without holding the whole split in
memory; the last batch is simply shorter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edgekd.errors import EdgeKDError
from edgekd.export import contract
from edgekd.shared.images import load_image
from edgekd.shared.preprocess import PreprocessConfig, preprocess_numpy


def manifest_items(data: str | Path, classes: list[str] | None = None) -> list[tuple[str, int]]:
    """Items of a manifest JSON (or a dataset folder via `edgekd.data.discover`), labels checked.

    The manifest's class names must equal the model's (same order), or every label means
    something else and accuracy would be silently wrong.
    """
    data = Path(data)
    if data.is_dir():
        found, items = contract.discover_items(data)
    else:
        if not data.exists():
            raise EdgeKDError(f"--data {data}: no such manifest or folder")
        m = contract.load_manifest(data)
        found, items = list(m.classes), [(str(p), int(l)) for p, l in m.items]
    if classes is not None and found != list(classes):
        raise EdgeKDError(
            f"classes in {data} ({found[:6]}...) differ from the model's ({list(classes)[:6]}...); "
            "pass the test manifest of the run the model was trained on"
        )
    if not items:
        raise EdgeKDError(f"{data} has no images")
    return items


def manifest_attributes(data: str | Path) -> dict[str, list[str | None]]:
    """The subgroup columns (site, scanner ...) of a manifest JSON, aligned with `manifest_items`;
    empty for a dataset folder (write a manifest or a CSV with the columns to report subgroups)."""
    data = Path(data)
    return {} if data.is_dir() else dict(contract.load_manifest(data).attributes)


def load_batch(paths: list[str], preprocess: dict) -> np.ndarray:
    """The one image-batch loader: addresses -> float32 NCHW, preprocessed exactly as serving does."""
    cfg = PreprocessConfig.from_dict(preprocess)
    return np.stack([preprocess_numpy(load_image(p), cfg) for p in paths]).astype(np.float32)


def iter_batches(items: list[tuple[str, int]], preprocess: dict, batch_size: int = 32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        yield load_batch([p for p, _ in chunk], preprocess), np.array([l for _, l in chunk], dtype=np.int64)
