"""Builders for tiny, faithful copies of the real dataset layouts (for any test that needs data).

Folder names, nesting, spaces, mask folders, metadata files and CSV encodings follow the
published downloads (see /work/shared/reference/README.md); images are small generated ones.
Usage: `from tests.fixtures_data import make_chest_xray; root = make_chest_xray(tmp_path)`.
"""

from __future__ import annotations

import csv
import gzip
import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

CXR_CLASSES = ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
CT_FOLDERS = {"1NonCOVID": "normal", "2COVID": "covid", "3CAP": "cap"}
MRI_CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
MRI_PREFIX = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}


def image_array(h: int = 32, w: int = 32, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A smooth gradient plus noise (compresses like a scan, not like white noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 255 / max(w - 1, 1) * 0.5 + yy * 255 / max(h - 1, 1) * 0.3 + rng.integers(0, 60)) % 256
    arr = np.clip(base + rng.normal(0, 12, size=(h, w)), 0, 255).astype(np.uint8)
    if channels == 3:
        arr = np.stack([arr, np.roll(arr, 3, axis=1), 255 - arr], axis=-1)
    return arr


def write_image(path: Path, h: int = 32, w: int = 32, seed: int = 0, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_array(h, w, seed, channels)).save(path)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file short, like an interrupted download."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def make_chest_xray(root: Path, n: int | dict[str, int] = 5, size: int = 32, nested: bool = False) -> Path:
    """COVID-19 Radiography Database: CLASS/images + CLASS/masks (same names), xlsx + README.md.txt beside.

    `nested=True` puts it under COVID-19_Radiography_Dataset/ as the Kaggle zip does. Returns the
    path a user would pass.
    """
    base = root / "COVID-19_Radiography_Dataset" if nested else root
    counts = n if isinstance(n, dict) else {c: n for c in CXR_CLASSES}
    for k, cls in enumerate(CXR_CLASSES):
        for i in range(1, counts.get(cls, 0) + 1):
            write_image(base / cls / "images" / f"{cls}-{i}.png", size, size, seed=100 * k + i)
            write_image(base / cls / "masks" / f"{cls}-{i}.png", size // 2 + 4, size // 2 + 4, seed=7)
        (base / cls).mkdir(parents=True, exist_ok=True)
        (base / f"{cls}.metadata.xlsx").write_bytes(b"PK\x03\x04 not really a spreadsheet")
    (base / "README.md.txt").write_text("COVID-19 Radiography Database (fixture)\n")
    return root


def make_covid_ct(root: Path, patients: dict[str, int] | None = None, per_patient: int = 3) -> Path:
    """Large COVID-19 CT slice dataset: archive/curated_data/curated_data/{1NonCOVID,2COVID,3CAP} + latin-1 CSVs.

    `patients`: folder -> number of patients. PNG sizes vary. Returns root/archive.
    """
    patients = patients or {"1NonCOVID": 6, "2COVID": 6, "3CAP": 5}
    archive = root / "archive"
    data = archive / "curated_data" / "curated_data"
    for k, (folder, kind) in enumerate(CT_FOLDERS.items()):
        rows = []
        for p in range(patients.get(folder, 0)):
            pid = f"{kind[:2].upper()}{p:03d}"
            for s in range(per_patient):
                name = f"{kind.capitalize()} ({p * per_patient + s + 1}).png"
                size = 32 if (p + s) % 2 else 40
                write_image(data / folder / name, size, size, seed=1000 * k + 10 * p + s)
                rows.append({"Patient ID": pid, "File name": name, "Age": 40 + p, "Country": "Türkiye"})
        text = io.StringIO()
        writer = csv.DictWriter(text, ["Patient ID", "File name", "Age", "Country"])
        writer.writeheader()
        writer.writerows(rows)
        (archive / f"meta_data_{kind}.csv").write_bytes(text.getvalue().encode("latin-1"))
    return archive


def make_brain_mri(root: Path, n_train: int = 5, n_test: int = 2) -> Path:
    """Brain Tumor MRI: Training/ and Testing/, each glioma/meningioma/notumor/pituitary, JPGs of varying size."""
    for split, n, tag in (("Training", n_train, "Tr"), ("Testing", n_test, "Te")):
        for k, cls in enumerate(MRI_CLASSES):
            for i in range(n):
                size = (36 + 4 * (i % 3), 32 + 2 * (i % 2))
                write_image(root / split / cls / f"{tag}-{MRI_PREFIX[cls]}_{i:04d}.jpg", *size, seed=50 * k + i,
                            channels=3 if i % 2 else 1)
    return root


def make_folder(root: Path, counts: dict[str, int] | None = None, size: int = 24) -> Path:
    """Generic class-per-folder tree."""
    counts = counts if counts is not None else {"benign": 4, "malignant": 5, "normal": 3}
    for k, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(root / cls / f"img_{i}.png", size, size, seed=20 * k + i)
    return root


def make_csv_manifest(root: Path, n_per_class: int = 4) -> Path:
    """images/ + labels.csv (path,label,group) with string labels. Returns the CSV path."""
    rows = []
    for k, cls in enumerate(["cyst", "normal", "stone"]):
        for i in range(n_per_class):
            rel = f"images/{cls}_{i}.png"
            write_image(root / rel, 24, 24, seed=30 * k + i)
            rows.append({"path": rel, "label": cls, "group": f"patient{i % 2}{k}"})
    out = root / "labels.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "group"])
        w.writeheader()
        w.writerows(rows)
    return out


def make_medmnist(root: Path, name: str = "pneumoniamnist", counts=(8, 3, 4), n_classes: int = 2,
                  size: int = 28, rgb: bool = False) -> Path:
    """MedMNIST .npz: {train,val,test}_{images,labels}, labels shaped (N, 1)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % n_classes).reshape(n, 1).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.npz"
    np.savez_compressed(path, **arrays)
    return path


def _idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def make_fashion_idx(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """Tiny Fashion-MNIST-format idx .gz files (10 classes, 28x28)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    return root


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", slope: float = 1.0,
                intercept: float = 0.0, center: float | None = None, width: float | None = None,
                patient: str = "ANON") -> Path:
    """A minimal valid DICOM (explicit VR little endian) built with pydicom's Dataset/FileMetaDataset."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = patient
    pixels = np.ascontiguousarray(pixels.astype(np.uint16))
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if center is not None:
        ds.WindowCenter = center
        ds.WindowWidth = width
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_dicom_tree(root: Path, n: int = 3, per_patient: int | None = None) -> Path:
    """Class-per-folder DICOMs, half MONOCHROME1, with rescale and a stored window.

    PatientID is "ANON" (anonymised export) unless `per_patient`: then `per_patient` files per patient.
    """
    rng = np.random.default_rng(0)
    for k, cls in enumerate(["normal", "pneumonia"]):
        for i in range(n):
            px = rng.integers(0, 4096, size=(20, 24))
            write_dicom(root / cls / f"IM{i:04d}.dcm", px, "MONOCHROME1" if i % 2 else "MONOCHROME2",
                        slope=1.0, intercept=-1024.0, center=40.0, width=400.0,
                        patient=f"{cls}-{i // per_patient}" if per_patient else "ANON")
    return root
