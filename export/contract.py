"""The seams to the training side, imported in one place.

Why: `export/` codes against DEVELOPERS.md (`edgekd.data`, `edgekd.shared.preprocess`,
`edgekd.models`). Everything the deployment side needs from the training side goes through
these few functions, so a change of that contract touches one file. Only `load_student` /
`save_student` import torch (lazily); the rest is torch-free so a clinic box can preprocess
for `predict` and `bench`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_manifest(path: str | Path) -> Any:
    """`edgekd.data.Manifest.load`: root, classes, items=[(absolute address, label)]."""
    from edgekd.data import Manifest

    return Manifest.load(Path(path))


def load_image(address: str) -> Any:
    """`edgekd.data.load_image` -> RGB PIL image (files, DICOM, idx://, npz://)."""
    from edgekd.data import load_image as _load_image

    return _load_image(address)


def preprocess_config(d: dict) -> Any:
    """`edgekd.shared.preprocess.PreprocessConfig.from_dict`."""
    from edgekd.shared.preprocess import PreprocessConfig

    return PreprocessConfig.from_dict(d)


def preprocess_numpy(image: Any, cfg: Any) -> Any:
    """`edgekd.shared.preprocess.preprocess_numpy` -> float32 CHW, equal to the torch eval transform."""
    from edgekd.shared.preprocess import preprocess_numpy as _pp

    return _pp(image, cfg)


def load_student(path: str | Path) -> tuple[Any, dict]:
    """`edgekd.models.load_student` -> (torch model in eval mode, sidecar dict); checks the sha256."""
    from edgekd.models import load_student as _load

    model, meta = _load(Path(path))
    return model.eval(), meta


def save_student(model: Any, path: str | Path, meta: dict) -> None:
    """`edgekd.models.save_student` (used by `edgekd.export.testing` to make tiny run dirs)."""
    from edgekd.models import save_student as _save

    _save(model, Path(path), meta)
