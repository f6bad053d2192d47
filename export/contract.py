"""The seams to the training side, imported in one place.

Why: `export/` codes against DEVELOPERS.md (`edgekd.data`, `edgekd.models`). Everything the
deployment side needs from the training side goes through these few functions, so a change of
that contract touches one file; tests/test_import_graph.py enforces it. Torch-free pieces both
sides use (the card, preprocessing, image decoding, rendering) are imported directly from
`edgekd.shared`. Only `load_student` / `save_student` import torch (lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.shared.card import StudentCard


def load_manifest(path: str | Path) -> Any:
    """`edgekd.data.Manifest.load`: root, classes, items=[(absolute address, label)]."""
    from edgekd.data import Manifest

    return Manifest.load(Path(path))


def discover_items(folder: str | Path) -> tuple[list[str], list[tuple[str, int]]]:
    """`edgekd.data.discover` of a dataset folder -> (class names, [(address, label)])."""
    from edgekd.data import discover

    index = discover(str(folder))
    return list(index.classes), [(s.path, int(s.label)) for s in index.samples]


def load_student(path: str | Path) -> tuple[Any, StudentCard]:
    """`edgekd.models.load_student` -> (torch model in eval mode, its card); checks the sha256."""
    from edgekd.models import load_student as _load

    model, card = _load(Path(path))
    return model.eval(), card
