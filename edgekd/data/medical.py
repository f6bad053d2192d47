"""The paper's three medical datasets, laid out exactly as they are downloaded.

Fixed label orders (documented, independent of folder listing order):
chest X-ray COVID, Lung_Opacity, Normal, Viral Pneumonia; lung CT NonCOVID, COVID, CAP (folders
1NonCOVID, 2COVID, 3CAP); brain MRI glioma, meningioma, notumor, pituitary.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

from edgekd.data.index import DataWarning, Sample
from edgekd.data.scan import (
    SPLIT_DIR_NAMES, Built, class_samples, match_children, missing_classes_error, norm, read_text_any, subdirs,
    walk_dirs,
)
from edgekd.errors import EdgeKDError

CHEST_XRAY_CLASSES = ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
LUNG_CT_CLASSES = ["NonCOVID", "COVID", "CAP"]  # folders 1NonCOVID, 2COVID, 3CAP: label = prefix - 1
BRAIN_MRI_CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]

# ---------------------------------------------------------------- chest X-ray

_CXR_NAMES = {norm(c): i for i, c in enumerate(CHEST_XRAY_CLASSES)} | {"covid19": 0}


def find_cxr(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    for d in walk_dirs(root, 2):
        m = match_children(d, _CXR_NAMES)
        with_images = sum(any(norm(x.name) == "images" for x in subdirs(p)) for p in m.values())
        if len(m) >= 3 or (len(m) >= 2 and with_images >= 1):
            return d
    return None


def build_cxr(root: Path, verify: str) -> Built:
    where = find_cxr(root) or root
    found = match_children(where, _CXR_NAMES)
    if len(found) != len(CHEST_XRAY_CLASSES):
        raise missing_classes_error("covid_radiography", where, CHEST_XRAY_CLASSES, found)
    dirs = []
    for label, d in sorted(found.items()):
        images = next((x for x in subdirs(d) if norm(x.name) == "images"), None)
        dirs.append((label, images or d, None))
    samples, skipped = class_samples(dirs, verify, exclude={"masks"})
    return list(CHEST_XRAY_CLASSES), samples, skipped


# ---------------------------------------------------------------- lung CT

_CT_NAMES = {"1noncovid": 0, "2covid": 1, "3cap": 2}


def _ct_dirs(root: Path) -> list[Path]:
    return [d for d in walk_dirs(root, 4) if len(match_children(d, _CT_NAMES)) >= 2] if root.is_dir() else []


def find_ct(root: Path) -> Path | None:
    dirs = _ct_dirs(root)
    return dirs[0] if dirs else None


def _ct_patients(root: Path) -> dict[str, str]:
    """File name -> patient id from every meta_data_*.csv under root (any of the usual encodings)."""
    table: dict[str, str] = {}
    # below root, or beside an ancestor when the user pointed at curated_data/curated_data itself
    dirs = walk_dirs(root, 4) + [root.parent, root.parent.parent]
    metas = list(dict.fromkeys(p for d in dirs for p in sorted(d.glob("*.csv")) if norm(p.stem).startswith("metadata")))
    for meta in metas:
        rows = list(csv.reader(io.StringIO(read_text_any(meta))))
        if not rows:
            continue
        header = [norm(h) for h in rows[0]]
        if "patientid" not in header or "filename" not in header:
            warnings.warn(
                f"{meta} has no 'Patient ID' and 'File name' columns (has {rows[0]}); ignored, so its "
                "images get no patient id", DataWarning, stacklevel=4,
            )
            continue
        pi, fi = header.index("patientid"), header.index("filename")
        for row in rows[1:]:
            if len(row) > max(pi, fi) and row[fi].strip():
                table[os.path.basename(row[fi].strip())] = row[pi].strip()
    return table


def build_ct(root: Path, verify: str) -> Built:
    dirs = _ct_dirs(root)
    if not dirs:
        raise EdgeKDError(
            f"covid_ct: no 1NonCOVID/2COVID/3CAP folders under {root}; fix: point at the unpacked archive"
        )
    where = dirs[0]
    if len(dirs) > 1:
        warnings.warn(
            f"covid_ct: several curated_data copies found; using {where}, ignoring {[str(d) for d in dirs[1:]]}",
            DataWarning, stacklevel=3,
        )
    found = match_children(where, _CT_NAMES)
    if len(found) != len(LUNG_CT_CLASSES):
        raise missing_classes_error("covid_ct", where, ["1NonCOVID", "2COVID", "3CAP"], found)
    samples, skipped = class_samples([(lab, d, None) for lab, d in sorted(found.items())], verify)
    patients = _ct_patients(root)
    samples = [Sample(s.path, s.label, patients.get(os.path.basename(s.path)), None) for s in samples]
    missing = sum(s.group is None for s in samples)
    if missing:
        warnings.warn(
            f"covid_ct: {missing} of {len(samples)} images have no patient id in meta_data_*.csv; a "
            "patient-level split treats each of them as its own patient (fix: keep the CSVs beside curated_data)",
            DataWarning, stacklevel=3,
        )
    return list(LUNG_CT_CLASSES), samples, skipped


# ---------------------------------------------------------------- brain MRI

_MRI_NAMES = {
    "glioma": 0, "gliomatumor": 0, "meningioma": 1, "meningiomatumor": 1,
    "notumor": 2, "no": 2, "notumour": 2, "pituitary": 3, "pituitarytumor": 3,
}


def _mri_split_dirs(d: Path) -> dict[str, Path]:
    out = {}
    for c in subdirs(d):
        split = SPLIT_DIR_NAMES.get(norm(c.name))
        if split and len(match_children(c, _MRI_NAMES)) >= 2:
            out.setdefault(split, c)
    return out


def find_mri(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    return next((d for d in walk_dirs(root, 2) if _mri_split_dirs(d)), None)


def build_mri(root: Path, verify: str) -> Built:
    where = find_mri(root) or root
    dirs, seen = [], {}
    for split, sd in sorted(_mri_split_dirs(where).items()):
        for label, d in sorted(match_children(sd, _MRI_NAMES).items()):
            dirs.append((label, d, split))
            seen[label] = d
    if len(seen) != len(BRAIN_MRI_CLASSES):
        raise missing_classes_error("brain_mri", where, BRAIN_MRI_CLASSES, seen)
    samples, skipped = class_samples(dirs, verify)
    return list(BRAIN_MRI_CLASSES), samples, skipped
