"""Folder-walking helpers shared by the layouts: find image candidates, check them, match names.

Why separate: every layout needs the same rules (hidden folders skipped, names matched case-,
space- and underscore-insensitively, files checked in threads, CSVs read in any encoding).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from edgekd.data.index import Sample, Skipped
from edgekd.shared.images import check_file, is_candidate
from edgekd.errors import EdgeKDError

T = TypeVar("T")
R = TypeVar("R")
Built = tuple[list[str], list[Sample], list[Skipped]]  # (classes, samples, skipped) from a layout's build

SPLIT_DIR_NAMES = {
    "train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}


def norm(name: str) -> str:
    """Folder-name key: case-, space-, underscore- and dash-insensitive."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def subdirs(d: Path) -> list[Path]:
    try:
        return sorted(p for p in d.iterdir() if p.is_dir() and not hidden(p.name))
    except OSError:
        return []


def hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def walk_dirs(root: Path, max_depth: int) -> list[Path]:
    """`root` and its sub-folders down to `max_depth`, shallowest first (breadth-first, sorted)."""
    out, frontier = [root], [root]
    for _ in range(max_depth):
        frontier = [c for d in frontier for c in subdirs(d)]
        out += frontier
    return out


def scan_images(d: Path, exclude: set[str] = frozenset()) -> list[Path]:
    """Image candidates under `d` (recursive, sorted), skipping hidden folders and `exclude` names."""
    found: list[Path] = []
    for cur, dirs, files in os.walk(d):
        dirs[:] = sorted(x for x in dirs if not hidden(x) and norm(x) not in exclude)
        found += [Path(cur) / f for f in sorted(files) if not hidden(f) and is_candidate(Path(cur) / f)]
    return found


def io_map(fn: Callable[[T], R], items: list[T]) -> list[R]:
    """`[fn(x) for x in items]` in threads: discovery reads many small files and is I/O bound."""
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(fn, items))


def check_paths(paths: list[Path], verify: str) -> tuple[list[Path], list[Skipped]]:
    """Split candidates into usable files and skipped ones."""
    reasons = io_map(lambda p: check_file(p, verify), paths)
    good = [p for p, r in zip(paths, reasons) if r is None]
    bad = [Skipped(str(p), r) for p, r in zip(paths, reasons) if r is not None]
    return good, bad


def class_samples(
    dirs: list[tuple[int, Path, str | None]], verify: str, exclude: set[str] = frozenset()
) -> tuple[list[Sample], list[Skipped]]:
    """Samples for (label, folder, source_split) triples."""
    samples, skipped = [], []
    for label, d, split in dirs:
        good, bad = check_paths(scan_images(d, exclude), verify)
        samples += [Sample(str(p), label, None, split) for p in good]
        skipped += bad
    return samples, skipped


def match_children(d: Path, names: dict[str, int]) -> dict[int, Path]:
    """Label -> child folder of `d` whose normalised name is a key of `names`."""
    out: dict[int, Path] = {}
    for c in subdirs(d):
        label = names.get(norm(c.name))
        if label is not None and label not in out:
            out[label] = c
    return out


def missing_classes_error(layout: str, where: Path, classes: list[str], found: dict[int, Path]) -> EdgeKDError:
    missing = [c for i, c in enumerate(classes) if i not in found]
    present = [p.name for p in subdirs(where)]
    return EdgeKDError(
        f"{layout}: expected {len(classes)} class folders {classes} in {where}, missing {missing} "
        f"(found folders: {present}); fix: restore the missing folder(s) from the original download, "
        f"or use --layout folder to train on the classes present"
    )


def read_text_any(path: Path) -> str:
    """CSV text in UTF-8, else Windows-1252, else Latin-1 (the lung CT metadata mixes them)."""
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")
