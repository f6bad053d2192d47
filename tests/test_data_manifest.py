"""Manifests round-trip, detect tampering, and `prepare_data` writes and reuses them."""

from __future__ import annotations

import json
import os

import pytest

from edgekd.data import DataConfig, Manifest, discover, load_image, prepare_data
from edgekd.errors import EdgeKDError
from tests.fixtures_data import make_chest_xray, make_covid_ct, make_fashion_idx


def test_round_trip_relative_paths(tmp_path):
    idx = discover(make_chest_xray(tmp_path / "cxr", n=3))
    m = Manifest.from_index(idx, [0, 4, 7], meta={"part": "train"})
    assert m.items[0][0] == idx.samples[0].path  # absolute in memory, ready for load_image
    assert m.to_dict()["items"][0] == ["COVID/images/COVID-1.png", 0]  # relative on disk
    path = m.save(tmp_path / "run" / "data" / "train.json")
    d = json.loads(path.read_text())
    assert set(d) >= {"root", "layout", "classes", "items", "sha256"}
    back = Manifest.load(path)
    assert back.items == m.items and back.classes == idx.classes and back.sha256 == m.sha256
    assert back.paths()[1] == idx.samples[4].path
    load_image(back.paths()[0])


def test_archive_addresses_relative_and_moved_root(tmp_path):
    idx = discover(make_fashion_idx(tmp_path / "fm"))
    m = Manifest.from_index(idx, [0, 25])
    assert m.to_dict()["items"][0][0] == "idx://train-images-idx3-ubyte.gz#0"
    m.save(tmp_path / "m.json")
    (tmp_path / "fm").rename(tmp_path / "moved")
    back = Manifest.load(tmp_path / "m.json", root=tmp_path / "moved")
    assert back.sha256 == m.sha256
    assert load_image(back.items[1][0]).size == (28, 28)


def test_from_items_relative_and_absolute(tmp_path):
    root = make_chest_xray(tmp_path / "cxr", n=2)
    m = Manifest.from_items(root, ["COVID", "Normal"], [("COVID/images/COVID-1.png", 0),
                                                        (str(root / "Normal/images/Normal-2.png"), 1)])
    assert all(os.path.isabs(p) for p, _ in m.items)
    assert [p for p, _ in m.relative_items()] == ["COVID/images/COVID-1.png", "Normal/images/Normal-2.png"]
    back = Manifest.load(m.save(tmp_path / "m.json"))
    assert back.items == m.items and load_image(back.items[1][0]).mode == "RGB"


def test_tampered_manifest_is_rejected(tmp_path):
    idx = discover(make_chest_xray(tmp_path / "cxr", n=2))
    path = Manifest.from_index(idx).save(tmp_path / "m.json")
    d = json.loads(path.read_text())
    d["items"][0][1] = 3
    path.write_text(json.dumps(d))
    with pytest.raises(EdgeKDError, match="sha256"):
        Manifest.load(path)
    with pytest.raises(EdgeKDError, match="not found"):
        Manifest.load(tmp_path / "nope.json")


def test_prepare_data_writes_and_resumes(tmp_path):
    root = make_chest_xray(tmp_path / "cxr", n=10)
    cfg = DataConfig(root=str(root), fraction=0.3, draw=1, seed=0, test_limit=1)
    run = tmp_path / "run"
    p = prepare_data(cfg, run)
    assert (run / "data" / "train.json").exists() and (run / "data" / "test.json").exists()
    assert p.classes == ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
    assert set(p.index.counts(p.train_ids).values()) == {round(0.3 * 8)}
    assert set(p.index.counts(p.test_ids).values()) == {1}
    assert not set(p.train_ids) & set(p.test_ids)
    again = prepare_data(cfg, run)
    assert again.resumed and again.train_ids == p.train_ids and again.test_ids == p.test_ids
    other = DataConfig(root=str(root), fraction=0.3, draw=2, seed=0, test_limit=1)
    with pytest.raises(EdgeKDError, match="different data settings"):
        prepare_data(other, run)
    assert prepare_data(other, None).train_ids != p.train_ids  # another draw, another subset


def test_prepare_data_group_split(tmp_path):
    root = make_covid_ct(tmp_path, {"1NonCOVID": 6, "2COVID": 6, "3CAP": 6}, per_patient=2)
    p = prepare_data(DataConfig(root=str(root), split="group"), tmp_path / "run")
    groups = lambda ids: {p.index.samples[i].group for i in ids}  # noqa: E731
    assert not groups(p.train_ids) & groups(p.test_ids)
    assert p.manifests["train"].meta["data"]["split"] == "group"


def test_data_config_dict_round_trip():
    cfg = DataConfig(root="x", fraction=0.05, draw=3, test_limit=10)
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(EdgeKDError, match="unknown data option"):
        DataConfig.from_dict({"roots": "x"})
