"""Each published layout loads as downloaded, with the documented class order."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgekd.data import FASHION_MNIST_ROOT, discover, load_image
from edgekd.shared.images import dicom_to_array
from tests.fixtures_data import (
    make_brain_mri, make_chest_xray, make_covid_ct, make_csv_manifest, make_dicom_tree, make_fashion_idx,
    make_folder, make_medmnist, write_dicom, write_image,
)


def test_chest_xray_images_only_spaces_and_nesting(tmp_path):
    root = make_chest_xray(tmp_path, n={"COVID": 3, "Lung_Opacity": 4, "Normal": 5, "Viral Pneumonia": 2}, nested=True)
    idx = discover(root)
    assert idx.layout == "covid_radiography"
    assert idx.classes == ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
    assert idx.counts() == {"COVID": 3, "Lung_Opacity": 4, "Normal": 5, "Viral Pneumonia": 2}
    assert all("/images/" in s.path and "/masks/" not in s.path for s in idx.samples)
    assert any("Viral Pneumonia/images/Viral Pneumonia-1.png" in s.path for s in idx.samples)
    assert not idx.skipped  # xlsx / txt beside the folders are ignored, not "skipped"


def test_chest_xray_class_folders_case_insensitive(tmp_path):
    root = make_chest_xray(tmp_path, n=2)
    os.rename(root / "Viral Pneumonia", root / "viral pneumonia")
    os.rename(root / "COVID", root / "covid")
    idx = discover(root)
    assert idx.layout == "covid_radiography"
    assert idx.counts() == {"COVID": 2, "Lung_Opacity": 2, "Normal": 2, "Viral Pneumonia": 2}


def test_covid_ct_doubled_folder_and_latin1_patient_ids(tmp_path):
    root = make_covid_ct(tmp_path, {"1NonCOVID": 4, "2COVID": 3, "3CAP": 2}, per_patient=2)
    assert b"T\xfcrkiye" in (root / "meta_data_covid.csv").read_bytes()  # really latin-1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every image has a patient id: no warning
        idx = discover(root)
    assert idx.layout == "covid_ct"
    assert idx.classes == ["NonCOVID", "COVID", "CAP"]
    assert idx.counts() == {"NonCOVID": 8, "COVID": 6, "CAP": 4}
    assert {s.group for s in idx.samples} == {f"NO{i:03d}" for i in range(4)} | {f"CO{i:03d}" for i in range(3)} | {
        "CA000", "CA001"}
    # the layout is found from above archive/ too, and from the inner folder (CSVs two levels up)
    assert discover(tmp_path).layout == "covid_ct"
    inner = discover(root / "curated_data" / "curated_data")
    assert inner.counts() == idx.counts() and all(s.group for s in inner.samples)


def test_covid_ct_without_metadata_warns(tmp_path):
    root = make_covid_ct(tmp_path, {"1NonCOVID": 2, "2COVID": 2, "3CAP": 2}, per_patient=1)
    for f in root.glob("meta_data_*.csv"):
        f.unlink()
    with pytest.warns(UserWarning, match="no patient id"):
        idx = discover(root)
    assert all(s.group is None for s in idx.samples)


def test_brain_mri_official_split_and_varying_sizes(tmp_path):
    root = make_brain_mri(tmp_path, n_train=3, n_test=2)
    idx = discover(root)
    assert idx.layout == "brain_mri"
    assert idx.classes == ["glioma", "meningioma", "notumor", "pituitary"]
    assert idx.counts() == {c: 5 for c in idx.classes}
    assert idx.source_splits == {"test": 8, "train": 12}
    sizes = {load_image(s.path).size for s in idx.samples}
    assert len(sizes) > 1
    assert all(load_image(s.path).mode == "RGB" for s in idx.samples[:4])


def test_generic_folder_sorted_names_and_split_parents(tmp_path):
    idx = discover(make_folder(tmp_path / "a", {"zeta": 2, "alpha": 3}))
    assert idx.layout == "folder" and idx.classes == ["alpha", "zeta"]
    assert idx.counts() == {"alpha": 3, "zeta": 2}
    b = tmp_path / "b"
    make_folder(b / "train", {"x": 3, "y": 3})
    make_folder(b / "test", {"x": 1, "y": 2})
    idx = discover(b)
    assert idx.classes == ["x", "y"] and idx.source_splits == {"test": 3, "train": 6}


def test_csv_manifest(tmp_path):
    idx = discover(make_csv_manifest(tmp_path, n_per_class=3))
    assert idx.layout == "csv"
    assert idx.classes == ["cyst", "normal", "stone"]
    assert idx.counts() == {"cyst": 3, "normal": 3, "stone": 3}
    assert all(s.group for s in idx.samples)
    assert discover(tmp_path).layout == "csv"  # a folder holding one path,label CSV


def test_medmnist_npz(tmp_path):
    path = make_medmnist(tmp_path, counts=(6, 2, 4))
    idx = discover(path)
    assert idx.layout == "medmnist" and idx.classes == ["normal", "pneumonia"]
    assert idx.source_splits == {"test": 4, "train": 6, "val": 2}
    img = load_image(idx.samples[0].path)
    assert img.mode == "RGB" and img.size == (28, 28)
    with np.load(path) as z:
        assert np.array_equal(np.asarray(img)[..., 0], z["train_images"][0])
    rgb = make_medmnist(tmp_path / "rgb", name="bloodmnist", n_classes=8, counts=(16, 8, 8), rgb=True)
    idx = discover(rgb)
    assert len(idx.classes) == 8 and load_image(idx.samples[3].path).size == (28, 28)


def test_fashion_idx_fixture(tmp_path):
    idx = discover(make_fashion_idx(tmp_path, 20, 10))
    assert idx.layout == "fashion_mnist" and "STAND-IN" in idx.description
    assert idx.classes[0] == "T-shirt/top" and len(idx.classes) == 10
    assert idx.samples[0].path.startswith("idx://")
    assert load_image(idx.samples[-1].path).size == (28, 28)


@pytest.mark.skipif(not Path(FASHION_MNIST_ROOT).exists(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_alias():
    idx = discover("fashion-mnist")
    assert idx.root == FASHION_MNIST_ROOT and len(idx) == 70000
    assert idx.source_splits == {"test": 10000, "train": 60000}
    assert set(idx.counts().values()) == {7000}
    img = load_image(idx.samples[0].path)
    assert img.mode == "RGB" and img.size == (28, 28)
    r, g, b = (np.asarray(img)[..., c] for c in range(3))
    assert np.array_equal(r, g) and np.array_equal(g, b)


def test_dicom_tree_layout(tmp_path):
    idx = discover(make_dicom_tree(tmp_path / "d", n=2))
    assert idx.layout == "dicom" and idx.classes == ["normal", "pneumonia"]
    img = load_image(idx.samples[0].path)
    assert img.mode == "RGB" and img.size == (24, 20)


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    # stored 1024 + intercept -1024 = 0 HU; window 40/400 -> [-160, 240]
    px = np.array([[0, 864, 1064], [1264, 1500, 4000]])  # HU -1024, -160, 40, 240, 476, 2976
    m2 = dicom_to_array(write_dicom(tmp_path / "a.dcm", px, "MONOCHROME2", 1.0, -1024.0, 40.0, 400.0))
    assert m2[0, 0] == 0 and m2[0, 1] == 0 and m2[1, 0] == 255 and m2[1, 2] == 255
    assert abs(int(m2[0, 2]) - 128) <= 1  # window centre -> mid grey
    m1 = dicom_to_array(write_dicom(tmp_path / "b.dcm", px, "MONOCHROME1", 1.0, -1024.0, 40.0, 400.0))
    assert np.array_equal(m1.astype(int), 255 - m2.astype(int))
    # slope 2: stored 532 -> 1064 - 1024 = 40 HU
    m3 = dicom_to_array(write_dicom(tmp_path / "c.dcm", np.array([[532, 0]]), "MONOCHROME2", 2.0, -1024.0, 40.0, 400.0))
    assert abs(int(m3[0, 0]) - 128) <= 1
    # no stored window: full range stretched
    m4 = dicom_to_array(write_dicom(tmp_path / "d.dcm", np.array([[100, 300]])))
    assert m4.tolist() == [[0, 255]]
    img = load_image(tmp_path / "b.dcm")
    assert img.mode == "RGB" and np.array_equal(np.asarray(img)[..., 1], m1)


def test_grey_and_16bit_png_become_rgb(tmp_path):
    p = write_image(tmp_path / "g.png", 10, 12)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (12, 10)
    from PIL import Image

    Image.fromarray(np.array([[0, 1000], [2000, 65535]], dtype=np.uint16)).save(tmp_path / "d.png")
    a = np.asarray(load_image(tmp_path / "d.png"))
    assert a.shape == (2, 2, 3) and a[0, 0, 0] == 0 and a[1, 1, 0] == 255


def test_discovery_is_deterministic_and_explicit_layout(tmp_path):
    root = make_brain_mri(tmp_path, 2, 1)
    a, b = discover(root), discover(root, layout="brain_mri")
    assert a.samples == b.samples
    shutil.copytree(root / "Training", tmp_path / "only_training")
    assert discover(tmp_path / "only_training").layout == "folder"
