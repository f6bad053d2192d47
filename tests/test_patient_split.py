"""Patient-level splits by default: `split: auto` keeps each patient on one side wherever the layout knows
patient ids (lung CT metadata, a CSV group/patient column, DICOM PatientID); a split that mixes patients
warns and records it in the manifests."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from edgekd.data import DataConfig, DataWarning, SplitRecord, discover, make_split, prepare_data
from edgekd.data.cli import main as inspect_main
from tests.fixtures_data import make_covid_ct, make_dicom_tree, make_folder, write_image

CT_PATIENTS = {"1NonCOVID": 6, "2COVID": 6, "3CAP": 6}


def groups_of(index, ids) -> set[str]:
    return {index.samples[i].group for i in ids}


def test_default_split_puts_no_patient_on_both_sides(tmp_path, capsys):
    root = make_covid_ct(tmp_path, CT_PATIENTS, per_patient=3)
    p = prepare_data(DataConfig(root=str(root)), tmp_path / "run")
    assert not groups_of(p.index, p.train_ids) & groups_of(p.index, p.test_ids)
    saved = json.loads((tmp_path / "run" / "data" / "test.json").read_text())["meta"]
    assert saved["split"] == {"requested": "auto", "mode": "group", "reason": "the dataset has patient ids",
                              "groups_train": len(groups_of(p.index, p.train_ids)),
                              "groups_test": len(groups_of(p.index, p.test_ids)), "groups_both": 0}
    assert saved["data"]["split"] == "group"  # the mode used: what a resumed run must match
    # 16 of 18: fraction 1.0 holds data.val_size of the training patients out as validation
    assert "data: split group (auto: the dataset has patient ids); 16 patients, none on both sides" in (
        capsys.readouterr().out)


def test_stratified_over_patients_warns_and_records_the_mixing(tmp_path):
    root = make_covid_ct(tmp_path, CT_PATIENTS, per_patient=3)
    with pytest.warns(DataWarning, match=r"of 18 patients have images in BOTH train and test.*data\.split=auto"):
        p = prepare_data(DataConfig(root=str(root), split="stratified"), tmp_path / "run")
    both = groups_of(p.index, p.train_ids) & groups_of(p.index, p.test_ids)
    record = SplitRecord.from_meta(p.manifests["test"].meta)
    assert record == SplitRecord.from_meta(p.manifests["train"].meta)
    assert (record.requested, record.mode, record.mixed, record.groups_both) == (
        "stratified", "stratified", True, len(both))
    assert both and "WARNING" in record.describe() and f"{len(both)} of 18 patients" in record.describe()


def test_auto_without_patient_ids_is_the_paper_split_and_shares_its_manifests(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 6, "b": 7})
    idx = discover(root)
    auto, strat = make_split(idx, seed=3), make_split(idx, "stratified", seed=3)
    assert (auto.train, auto.test) == (strat.train, strat.test)  # same seed -> same images
    assert (auto.record.mode, auto.record.reason) == ("stratified", "no patient ids, so the paper's image-level split")
    run = tmp_path / "run"
    first = prepare_data(DataConfig(root=str(root), split="stratified"), run)
    again = prepare_data(DataConfig(root=str(root)), run)  # an auto config resumes a stratified run's split
    assert again.resumed and again.test_ids == first.test_ids


def test_auto_with_too_few_patients_falls_back_to_stratified_and_warns(tmp_path):
    idx = discover(make_dicom_tree(tmp_path, 3))  # anonymised export: one PatientID for every file
    assert {s.group for s in idx.samples} == {"ANON"}
    with pytest.warns(DataWarning, match="1 of 1 patients.*add patients"):
        sp = make_split(idx)
    assert sp.record.mode == "stratified" and "only 1 patients" in sp.record.reason


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.mark.parametrize("column", ["patient", "Patient ID", "group"])
def test_csv_patient_column_gives_groups(tmp_path, column):
    rows = []
    for k, cls in enumerate(["cyst", "stone"]):
        for i in range(12):
            write_image(tmp_path / "img" / f"{cls}{i}.png", 16, 16, seed=10 * k + i)
            rows.append([f"img/{cls}{i}.png", cls, f"P{k}{i // 2}"])
    idx = discover(write_csv(tmp_path / "labels.csv", ["path", "label", column], rows))
    assert {s.group for s in idx.samples} == {f"P{k}{i}" for k in range(2) for i in range(6)}
    sp = make_split(idx)
    assert sp.record.mode == "group" and not groups_of(idx, sp.train) & groups_of(idx, sp.test)


def test_dicom_patient_id_gives_groups(tmp_path):
    idx = discover(make_dicom_tree(tmp_path / "gen", 6, per_patient=2))
    assert idx.layout == "dicom"
    assert {s.group for s in idx.samples} == {f"{c}-{i}" for c in ("normal", "pneumonia") for i in range(3)}
    sp = make_split(idx)
    assert sp.record.mode == "group" and not groups_of(idx, sp.train) & groups_of(idx, sp.test)

    from pydicom.data import get_testdata_file  # real scanner files shipped with pydicom

    for cls, name in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        (tmp_path / "real" / cls).mkdir(parents=True)
        shutil.copy(get_testdata_file(name), tmp_path / "real" / cls / name)
    real = discover(tmp_path / "real")
    assert real.layout == "dicom" and [s.group for s in real.samples] == ["1CT1", "4MR1"]


def test_inspect_shows_the_split_auto_chooses_and_the_mixing(tmp_path, capsys):
    ct = make_covid_ct(tmp_path, CT_PATIENTS, per_patient=3)
    assert inspect_main(["inspect", str(ct)]) == 0
    assert "split: group (auto: the dataset has patient ids); 18 patients, none on both sides" in (
        " ".join(capsys.readouterr().out.split()))
    with pytest.warns(DataWarning, match="BOTH train and test"):
        assert inspect_main(["inspect", str(ct), "--split", "stratified", "--json"]) == 0
    sp = json.loads(capsys.readouterr().out)["split"]
    assert sp["mode"] == "stratified" and sp["groups_both"] > 0 and "WARNING" in sp["summary"]


def test_train_presets_default_to_auto():
    configs = [yaml.safe_load(p.read_text()) for p in (Path(__file__).parents[1] / "edgekd" / "configs").glob("*.yaml")]
    presets = [c for c in configs if "data" in c]  # train presets (the folder also holds the paper's tables)
    assert len(presets) >= 3 and {c["data"]["split"] for c in presets} == {"auto"}
    assert DataConfig().split == "auto"
