"""Bad input gives an EdgeKDError naming the problem and the fix, or a counted warning naming the file."""

from __future__ import annotations

import os
import shutil

import pytest

from edgekd.data import DataConfig, DataWarning, discover, load_image, prepare_data
from edgekd.errors import EdgeKDError
from tests.fixtures_data import make_brain_mri, make_chest_xray, make_folder, truncate, write_image


def test_missing_folder(tmp_path):
    with pytest.raises(EdgeKDError, match="does not exist.*fix"):
        discover(tmp_path / "nope")


def test_unknown_layout_and_unrecognised_folder(tmp_path):
    make_folder(tmp_path / "f")
    with pytest.raises(EdgeKDError, match="unknown layout 'kaggle'"):
        discover(tmp_path / "f", layout="kaggle")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeKDError, match="could not recognise"):
        discover(tmp_path / "empty")
    with pytest.raises(EdgeKDError, match="does not look like the brain_mri"):
        discover(tmp_path / "f", layout="brain_mri")


def test_empty_class(tmp_path):
    root = make_folder(tmp_path, {"a": 3, "b": 2})
    (root / "c").mkdir()
    (root / "c" / "notes.txt").write_text("not an image")
    with pytest.raises(EdgeKDError, match=r"\['c'\] have no usable images"):
        discover(root)


def test_fewer_than_two_classes(tmp_path):
    with pytest.raises(EdgeKDError, match="at least 2"):
        discover(make_folder(tmp_path, {"only": 3}))


def test_wrong_class_count(tmp_path):
    root = make_chest_xray(tmp_path / "cxr", n=2)
    shutil.rmtree(root / "Viral Pneumonia")
    with pytest.raises(EdgeKDError, match=r"missing \['Viral Pneumonia'\].*fix"):
        discover(root)
    mri = make_brain_mri(tmp_path / "mri", 2, 1)
    with pytest.raises(EdgeKDError, match="found 4 classes.*but 3 were expected"):
        discover(mri, num_classes=3)


def test_truncated_and_corrupt_files_are_skipped_with_named_warning(tmp_path):
    root = make_folder(tmp_path, {"a": 4, "b": 4})
    truncate(root / "a" / "img_1.png")
    (root / "b" / "img_2.png").write_bytes(b"\x89PNG garbage")
    (root / "b" / "empty.png").write_bytes(b"")
    jpg = write_image(root / "a" / "cut.jpg", 40, 40)
    truncate(jpg, 0.6)
    with pytest.warns(DataWarning) as rec:
        idx = discover(root)
    messages = " ".join(str(w.message) for w in rec)
    for name in ("img_1.png", "img_2.png", "empty.png", "cut.jpg"):
        assert name in messages
    assert idx.counts() == {"a": 3, "b": 3}
    reasons = {os.path.basename(s.path): s.reason for s in idx.skipped}
    assert set(reasons) == {"img_1.png", "img_2.png", "empty.png", "cut.jpg"}
    assert "0 bytes" in reasons["empty.png"]


def test_all_images_of_a_class_corrupt_is_an_error(tmp_path):
    root = make_folder(tmp_path, {"a": 2, "b": 1})
    truncate(root / "b" / "img_0.png")
    with pytest.warns(DataWarning), pytest.raises(EdgeKDError, match="unreadable"):
        discover(root)


def test_load_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"nope")
    with pytest.raises(EdgeKDError, match="x.png.*fix"):
        load_image(bad)
    with pytest.raises(EdgeKDError, match="not found"):
        load_image(tmp_path / "gone.png")


def test_fraction_leaving_class_empty(tmp_path):
    root = make_brain_mri(tmp_path, 2, 1)
    shutil.rmtree(root / "Training" / "pituitary")  # official split: no pituitary training images
    with pytest.raises(EdgeKDError, match="pituitary.*no training images"):
        prepare_data(DataConfig(root=str(root), split="official", fraction=0.1), None)
