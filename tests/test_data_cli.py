"""`edgekd data inspect` on every fixture layout and on Fashion-MNIST."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.cli import main as edgekd_main
from edgekd.data import FASHION_MNIST_ROOT
from edgekd.data.cli import main
from tests.fixtures_data import (
    make_brain_mri, make_chest_xray, make_covid_ct, make_csv_manifest, make_dicom_tree, make_fashion_idx,
    make_folder, make_medmnist, truncate,
)

CASES = {
    "covid_radiography": (lambda p: make_chest_xray(p, n=3, nested=True),
                          {"COVID": 3, "Lung_Opacity": 3, "Normal": 3, "Viral Pneumonia": 3}),
    "covid_ct": (lambda p: make_covid_ct(p, {"1NonCOVID": 5, "2COVID": 5, "3CAP": 5}, per_patient=2),
                 {"NonCOVID": 10, "COVID": 10, "CAP": 10}),
    "brain_mri": (lambda p: make_brain_mri(p, 3, 1), {c: 4 for c in ["glioma", "meningioma", "notumor", "pituitary"]}),
    "folder": (lambda p: make_folder(p, {"b": 3, "a": 4}), {"a": 4, "b": 3}),
    "csv": (lambda p: make_csv_manifest(p, 3), {"cyst": 3, "normal": 3, "stone": 3}),
    "medmnist": (lambda p: make_medmnist(p, counts=(6, 2, 4)), {"normal": 6, "pneumonia": 6}),
    "fashion_mnist": (lambda p: make_fashion_idx(p, 20, 10), None),
    "dicom": (lambda p: make_dicom_tree(p, 3), {"normal": 3, "pneumonia": 3}),
}


def inspect_json(capsys, *args) -> dict:
    assert main(["inspect", *map(str, args), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # ONE JSON object
    return json.loads(out)


@pytest.mark.parametrize("layout", sorted(CASES))
def test_inspect_json_each_layout(layout, tmp_path, capsys):
    build, counts = CASES[layout]
    r = inspect_json(capsys, build(tmp_path))
    assert r["layout"] == layout
    assert list(r["counts"]) == r["classes"]
    if counts is not None:
        assert r["counts"] == counts
    assert r["split"]["train"] + r["split"]["test"] == r["total"]
    assert r["skipped"] == []


def test_inspect_tables_and_skipped(tmp_path, capsys):
    root = make_chest_xray(tmp_path, n=4)
    truncate(root / "Normal" / "images" / "Normal-2.png")
    assert main(["inspect", str(root)]) == 0
    out = capsys.readouterr().out
    assert "covid_radiography" in out and "Viral Pneumonia" in out and "Normal-2.png" in out
    r = inspect_json(capsys, root)
    assert r["counts"]["Normal"] == 3 and len(r["skipped"]) == 1
    assert r["skipped"][0]["path"].endswith("Normal-2.png") and "truncated" in r["skipped"][0]["reason"]


def test_inspect_split_modes(tmp_path, capsys):
    ct = make_covid_ct(tmp_path / "ct", {"1NonCOVID": 5, "2COVID": 5, "3CAP": 5}, per_patient=2)
    r = inspect_json(capsys, ct, "--split", "group", "--seed", "3")
    assert r["split"]["mode"] == "group" and r["groups"] == 15 and r["split"]["seed"] == 3
    mri = make_brain_mri(tmp_path / "mri", 3, 1)
    r = inspect_json(capsys, mri, "--split", "official")
    assert (r["split"]["train"], r["split"]["test"]) == (12, 4)
    r = inspect_json(capsys, make_folder(tmp_path / "f"), "--split", "official")
    assert "error" in r["split"]  # reported, not a crash


@pytest.mark.skipif(not Path(FASHION_MNIST_ROOT).exists(), reason="dataset-fashion-mnist not installed")
def test_inspect_real_fashion_mnist(capsys):
    r = inspect_json(capsys, "fashion-mnist", "--split", "official")
    assert r["layout"] == "fashion_mnist" and "STAND-IN" in r["description"]
    assert r["classes"][:2] == ["T-shirt/top", "Trouser"] and len(r["classes"]) == 10
    assert r["counts"] == {c: 7000 for c in r["classes"]}
    assert (r["split"]["train"], r["split"]["test"]) == (60000, 10000)


def test_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "fix:" in err
    (tmp_path / "one" / "only").mkdir(parents=True)
    make_folder(tmp_path / "one", {"only": 2})
    assert edgekd_main(["data", "inspect", str(tmp_path / "one")]) == 2
    assert "at least 2" in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "edgekd", "data", "inspect", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr
