"""What a clinic passes to `edgekd predict` / `edgekd explain`: folders (recursive), globs,
DICOM series without suffixes, archive addresses; named errors; the verb's own name in --help."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.shared.inputs import expand_images


@pytest.fixture
def tree(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "deeper" / "b.jpg")
    (tmp_path / "sub" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".hidden" / "c.png")
    series = tmp_path / "series"
    series.mkdir()
    pydicom_data = pytest.importorskip("pydicom.data")
    for i in (2, 1):
        shutil.copy(pydicom_data.get_testdata_file("CT_small.dcm"), series / f"IM{i}")
    return tmp_path


def test_folders_globs_and_dicom_series(tree):
    names = lambda paths: [p[len(str(tree)) + 1 :] for p in paths]  # noqa: E731
    assert names(expand_images([str(tree)])) == ["a.png", "series/IM1", "series/IM2", "sub/deeper/b.jpg"]
    assert names(expand_images([str(tree / "**" / "*.jpg")])) == ["sub/deeper/b.jpg"]
    assert names(expand_images([str(tree / "series"), str(tree / "a.png"), str(tree / "series" / "IM1")])) == [
        "series/IM1", "series/IM2", "a.png"]  # once each, in order
    assert expand_images(["idx:///data/train-images.gz#3"]) == ["idx:///data/train-images.gz#3"]


@pytest.mark.parametrize("arg, why", [("missing.png", "does not exist"), ("empty", "matches no image"),
                                      ("*.nothing", "matches no image")])
def test_named_errors(tmp_path, arg, why):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeKDError, match=why) as e:
        expand_images([str(tmp_path / arg)])
    assert "fix:" in str(e.value)


def test_help_names_the_verb(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: edgekd predict") and "--out" in out


def test_bad_out_suffix_is_a_user_error(tree, capsys):
    assert main(["predict", "model.onnx", str(tree), "--out", "results.xlsx"]) == 2
    assert "end the name in .csv or .json" in capsys.readouterr().err
