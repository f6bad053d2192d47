"""Dataset layouts and `discover()`, which recognises a folder and indexes it.

Each layout is a `Layout(name, description, find, build)`: `find(root)` says whether `root`
looks like it, `build` lists samples in a fixed, documented label order. Auto-detection tries
the specific layouts (archives, CSV, the medical datasets) before the generic class-per-folder
ones. The medical layouts live in `medical.py`, the array files in `archives.py`.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgekd.data.archives import FASHION_MNIST_ROOT, build_fashion, build_medmnist, find_fashion, find_medmnist
from edgekd.data.index import DatasetIndex, Sample, Skipped, warn_skipped
from edgekd.shared.images import is_dicom_file, require
from edgekd.data.medical import build_ct, build_cxr, build_mri, find_ct, find_cxr, find_mri
from edgekd.data.scan import (
    SPLIT_DIR_NAMES, Built, check_paths, class_samples, io_map, norm, read_text_any, scan_images, subdirs,
)
from edgekd.errors import EdgeKDError

ALIASES = {"fashion-mnist": FASHION_MNIST_ROOT, "fashion_mnist": FASHION_MNIST_ROOT}


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    find: Callable[[Path], Path | None]
    build: Callable[[Path, str], Built]


# ---------------------------------------------------------------- generic class-per-folder (and DICOM trees)

def _folder_plan(root: Path) -> tuple[list[str], list[tuple[int, Path, str | None]]]:
    """Class names (sorted) and (label, folder, split) triples; `train/`/`test/` parents become splits."""
    subs = subdirs(root)
    if subs and all(norm(s.name) in SPLIT_DIR_NAMES for s in subs):
        names = sorted({c.name for s in subs for c in subdirs(s)})
        lab = {n: i for i, n in enumerate(names)}
        return names, [(lab[c.name], c, SPLIT_DIR_NAMES[norm(s.name)]) for s in subs for c in subdirs(s)]
    names = [s.name for s in subs]
    return names, [(i, s, None) for i, s in enumerate(subs)]


def _find_folder(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    _, plan = _folder_plan(root)
    return root if any(scan_images(d) for _, d, _ in plan) else None


def _find_dicom(root: Path) -> Path | None:
    if _find_folder(root) is None:
        return None
    files = [f for _, d, _ in _folder_plan(root)[1] for f in scan_images(d)]
    return root if files and all(is_dicom_file(f) for f in files) else None


def _build_folder(root: Path, verify: str) -> Built:
    names, plan = _folder_plan(root)
    samples, skipped = class_samples(plan, verify)
    return names, samples, skipped


#: header tags offered as subgroup columns (scanner maker, patient sex), read in the same header pass as
#: PatientID, so they cost nothing extra and every DICOM run's reports can break the metrics down by them
DICOM_SUBGROUPS = ("Manufacturer", "PatientSex")


def _dicom_header(path: str) -> tuple[str | None, dict[str, str]]:
    """The file's PatientID and its non-empty subgroup tags (header only; pixels are not read)."""
    pydicom = require("pydicom", "reading DICOM files")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", *DICOM_SUBGROUPS])
    except (OSError, pydicom.errors.InvalidDicomError):
        return None, {}  # only reachable with verify=none; the image itself fails later, named
    values = {tag: str(ds.get(tag, "") or "").strip() for tag in ("PatientID", *DICOM_SUBGROUPS)}
    return values.pop("PatientID") or None, {k: v for k, v in values.items() if v}


def _build_dicom(root: Path, verify: str) -> Built:
    """Class-per-folder DICOMs; PatientID becomes the group so a split can keep each patient on one side,
    Manufacturer and PatientSex the sample's subgroup attributes."""
    names, samples, skipped = _build_folder(root, verify)
    headers = io_map(_dicom_header, [s.path for s in samples])
    return names, [replace(s, group=g, attributes=a or None) for s, (g, a) in zip(samples, headers)], skipped


# ---------------------------------------------------------------- CSV manifest

GROUP_COLUMNS = ("group", "patient", "patientid")  # normalised header names, first present wins


def _manifest_csv(root: Path) -> Path | None:
    if root.is_file():
        return root if root.suffix.lower() == ".csv" else None
    if not root.is_dir():
        return None
    hits = []
    for p in sorted(root.glob("*.csv")):
        header = next(csv.reader(io.StringIO(read_text_any(p))), [])
        if {"path", "label"} <= {norm(h) for h in header}:
            hits.append(p)
    return hits[0] if len(hits) == 1 else None


def _find_csv(root: Path) -> Path | None:
    return _manifest_csv(root)


def _build_csv(root: Path, verify: str) -> Built:
    path = _manifest_csv(root)
    if path is None:
        raise EdgeKDError(f"csv: {root} is not a CSV file (or a folder with exactly one path,label CSV)")
    rows = list(csv.DictReader(io.StringIO(read_text_any(path))))
    keymap = {norm(k): k for k in (rows[0].keys() if rows else [])}
    if "path" not in keymap or "label" not in keymap:
        raise EdgeKDError(f"{path}: needs columns path,label[,group|patient][,split]; fix: add a header row")
    group_col = next((keymap[k] for k in GROUP_COLUMNS if k in keymap), None)
    # every other column (site, scanner, sex, age_band ...) is a subgroup attribute of its row
    used = {keymap["path"], keymap["label"], keymap.get("split"), group_col}
    attribute_cols = [k for k in keymap.values() if k and k.strip() and k not in used]
    raw_labels = [r[keymap["label"]].strip() for r in rows]
    uniq = sorted(set(raw_labels), key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s))
    lab = {n: i for i, n in enumerate(uniq)}
    base, files, meta = path.parent, [], []
    for r, label in zip(rows, raw_labels):
        p = Path(r[keymap["path"]].strip())
        files.append(p if p.is_absolute() else base / p)
        group = r.get(group_col) if group_col else None
        split = r.get(keymap.get("split", ""), None)
        attributes = {k.strip(): (r[k] or "").strip() for k in attribute_cols if (r[k] or "").strip()}
        meta.append((lab[label], (group or "").strip() or None, SPLIT_DIR_NAMES.get(norm(split or ""), None),
                     attributes or None))
    exists = [f.is_file() for f in files]
    skipped = [Skipped(str(f), f"listed in {path.name} but not found") for f, e in zip(files, exists) if not e]
    present = [(f, m) for f, m, e in zip(files, meta, exists) if e]
    good, bad = check_paths([f for f, _ in present], verify)
    ok = {str(p) for p in good}
    samples = [Sample(str(f), *m) for f, m in present if str(f) in ok]
    return uniq, samples, skipped + bad


# ---------------------------------------------------------------- registry and discover()

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in [
        Layout("fashion_mnist", "Fashion-MNIST idx files (STAND-IN dataset, not medical: the offline default)",
               find_fashion, build_fashion),
        Layout("medmnist", "MedMNIST-format .npz (train/val/test images and labels)", find_medmnist, build_medmnist),
        Layout("csv", "CSV manifest with columns path,label[,group|patient][,split][,subgroup columns: site, "
               "scanner, ...]", _find_csv, _build_csv),
        Layout("covid_ct", "Large COVID-19 CT slice dataset: curated_data/{1NonCOVID,2COVID,3CAP}, patient ids "
               "from meta_data_*.csv", find_ct, build_ct),
        Layout("covid_radiography", "COVID-19 Radiography Database: COVID, Lung_Opacity, Normal, Viral Pneumonia "
               "(images/ only, masks/ ignored)", find_cxr, build_cxr),
        Layout("brain_mri", "Brain Tumor MRI dataset: Training/ and Testing/ with glioma, meningioma, notumor, "
               "pituitary", find_mri, build_mri),
        Layout("dicom", "class-per-folder tree of DICOM files (rescale, stored window, MONOCHROME1 inverted; "
               "groups = PatientID; subgroups = Manufacturer, PatientSex)", _find_dicom, _build_dicom),
        Layout("folder", "class-per-folder tree (classes = sorted folder names; train/ test/ parents = splits)",
               _find_folder, _build_folder),
    ]
}


def resolve_root(root: str | os.PathLike) -> Path:
    """User path -> existing absolute path (`fashion-mnist` is an alias for the Debian package's files)."""
    s = os.fspath(root)
    if not os.path.exists(s) and s.lower() in ALIASES:
        s = ALIASES[s.lower()]
        if not os.path.exists(s):
            raise EdgeKDError(
                f"Fashion-MNIST not found at {s}; fix: `sudo apt-get install dataset-fashion-mnist` "
                "(scripts/setup.sh does this)"
            )
    p = Path(s).expanduser()
    if not p.exists():
        raise EdgeKDError(f"dataset path {p} does not exist; fix: check the path (unpack the download first)")
    return p.resolve()


def detect_layout(root: Path) -> str:
    """First layout whose `find` recognises `root`; the error lists what was looked for."""
    for name, layout in LAYOUTS.items():
        if layout.find(root) is not None:
            return name
    raise EdgeKDError(
        f"could not recognise a dataset layout at {root}; fix: arrange images one folder per class "
        f"(ROOT/CLASS/*.png), or pass --layout with one of {sorted(LAYOUTS)}"
    )


def discover(
    root: str | os.PathLike,
    layout: str = "auto",
    verify: str = "quick",
    num_classes: int | None = None,
) -> DatasetIndex:
    """Recognise and index a dataset folder; corrupt files are skipped (counted, named in warnings).

    `verify`: quick (default: PNG chunk walk, JPEG end marker), full (decode every image), none.
    `num_classes`: when given, a different number of classes found is an error.
    """
    path = resolve_root(root)
    if layout != "auto" and layout not in LAYOUTS:
        raise EdgeKDError(f"unknown layout {layout!r}; fix: use one of auto, {', '.join(sorted(LAYOUTS))}")
    if verify not in ("quick", "full", "none"):
        raise EdgeKDError(f"unknown verify mode {verify!r}; fix: use quick, full or none")
    name = detect_layout(path) if layout == "auto" else layout
    spec = LAYOUTS[name]
    if layout != "auto" and spec.find(path) is None:
        raise EdgeKDError(
            f"{path} does not look like the {name} layout ({spec.description}); "
            "fix: check the path, or use --layout auto to see what it looks like"
        )
    classes, samples, skipped = spec.build(path, verify)
    # build order is deterministic already: label-major with sorted paths, or archive order
    index = DatasetIndex(str(path), name, classes, samples, skipped, spec.description)
    warn_skipped(skipped)  # first, so an "empty class" error below follows the names of its bad files
    _validate(index, num_classes)
    return index


def _validate(index: DatasetIndex, num_classes: int | None) -> None:
    if len(index.classes) < 2:
        raise EdgeKDError(
            f"{index.root}: found {len(index.classes)} class(es) {index.classes}; a classifier needs at least 2; "
            "fix: point at the folder that holds one sub-folder per class"
        )
    empty = [c for c, n in index.counts().items() if n == 0]
    if empty:
        why = f" ({len(index.skipped)} files were unreadable)" if index.skipped else ""
        raise EdgeKDError(
            f"{index.root}: class(es) {empty} have no usable images{why}; fix: add images to "
            f"{'those folders' if len(empty) > 1 else 'that folder'} or remove the empty class folder"
        )
    if num_classes is not None and len(index.classes) != num_classes:
        raise EdgeKDError(
            f"{index.root}: found {len(index.classes)} classes {index.classes} but {num_classes} were expected; "
            "fix: point at the right dataset, or change num_classes"
        )
