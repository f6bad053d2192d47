"""Array-file datasets: MedMNIST `.npz` and Fashion-MNIST idx files (the offline STAND-IN default).

Samples are addresses into the archive (`npz://FILE#SPLIT#N`, `idx://FILE#N`), so nothing is
unpacked; both carry their own train/test split (`source_split`).
"""

from __future__ import annotations

import gzip
import re
import zipfile
from pathlib import Path

import numpy as np

from edgekd.data.index import Sample, Skipped
from edgekd.shared.images import read_idx
from edgekd.data.scan import Built
from edgekd.errors import EdgeKDError

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# MedMNIST npz files carry no class names; these come from MedMNIST's INFO table.
MEDMNIST_CLASSES = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal, benign"],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "pathmnist": [
        "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
        "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium",
    ],
    "bloodmnist": [
        "basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte",
        "monocyte", "neutrophil", "platelet",
    ],
    "dermamnist": [
        "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
        "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions",
    ],
}


# ---------------------------------------------------------------- MedMNIST npz

def _npz_file(root: Path) -> Path | None:
    if root.is_file():
        return root if root.suffix.lower() == ".npz" else None
    hits = sorted(root.glob("*.npz")) if root.is_dir() else []
    return hits[0] if len(hits) == 1 else None


def find_medmnist(root: Path) -> Path | None:
    f = _npz_file(root)
    if f is None:
        return None
    try:
        with zipfile.ZipFile(f) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return None
    return f if {"train_images.npy", "train_labels.npy"} <= names else None


def build_medmnist(root: Path, verify: str) -> Built:
    f = find_medmnist(root)
    if f is None:
        raise EdgeKDError(f"medmnist: {root} is not a MedMNIST .npz (needs train_images/train_labels)")
    samples = []
    with np.load(f) as z:
        for split in ("train", "val", "test"):
            if f"{split}_labels" not in z.files:
                continue
            labels = np.asarray(z[f"{split}_labels"])
            labels = labels.reshape(len(labels), -1)
            if labels.shape[1] != 1:
                raise EdgeKDError(
                    f"{f}: {split}_labels has {labels.shape[1]} columns (multi-label, e.g. ChestMNIST); "
                    "edgekd trains single-label classifiers; fix: use a single-label MedMNIST set"
                )
            samples += [Sample(f"npz://{f}#{split}#{i}", int(y), None, split) for i, y in enumerate(labels[:, 0])]
    n_classes = max((s.label for s in samples), default=-1) + 1
    stem = re.sub(r"_\d+$", "", f.stem.lower())
    known = MEDMNIST_CLASSES.get(stem)
    classes = list(known) if known and len(known) >= n_classes else [str(i) for i in range(n_classes)]
    return classes, samples, []


# ---------------------------------------------------------------- Fashion-MNIST idx (stand-in)

def _idx_pair(root: Path, prefix: str) -> tuple[Path, Path] | None:
    def one(kind: str) -> Path | None:
        for name in (f"{prefix}-{kind}-ubyte.gz", f"{prefix}-{kind}-ubyte"):
            if (root / name).is_file():
                return root / name
        return None

    images, labels = one("images-idx3"), one("labels-idx1")
    return (images, labels) if images and labels else None


def find_fashion(root: Path) -> Path | None:
    return root if root.is_dir() and _idx_pair(root, "train") else None


def _idx_count(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        head = f.read(8)
    return int.from_bytes(head[4:8], "big") if len(head) == 8 else -1


def build_fashion(root: Path, verify: str) -> Built:
    samples, skipped = [], []
    for prefix, split in (("train", "train"), ("t10k", "test")):
        pair = _idx_pair(root, prefix)
        if pair is None:
            continue
        images, labels_file = pair
        labels = read_idx(str(labels_file))
        if _idx_count(images) != len(labels):
            skipped.append(Skipped(str(images), f"holds {_idx_count(images)} images but {len(labels)} labels"))
            continue
        samples += [Sample(f"idx://{images}#{i}", int(y), None, split) for i, y in enumerate(labels)]
    return list(FASHION_MNIST_CLASSES), samples, skipped
