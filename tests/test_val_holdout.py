"""At data.fraction=1.0 the trainer holds `data.val_size` of the training split out as validation
(best.* and the temperature fit), by patient where the test split is, never from the test split."""

from __future__ import annotations

import pytest

from edgekd.data import DataConfig, make_split, prepare_data
from edgekd.data.split import hold_out
from edgekd.errors import EdgeKDError
from tests.fixtures_data import make_covid_ct, make_folder


def groups_of(index, ids) -> set[str]:
    return {index.samples[i].group for i in ids}


def test_fraction_one_holds_out_validation_from_the_training_split_only(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 20, "b": 20})
    cfg = DataConfig(root=str(root))
    p = prepare_data(cfg, tmp_path / "run")
    split = make_split(p.index, cfg.split, cfg.test_size, cfg.seed)
    held = sorted(set(split.train) - set(p.train_ids))  # the trainer's validation pool
    assert p.test_ids == split.test and not set(held) & set(split.test)
    assert len(held) == 4 and p.index.counts(held) == {"a": 2, "b": 2}  # 10 % of 32, per class
    assert p.manifests["train"].meta["data"]["val_size"] == 0.1
    no_val = prepare_data(DataConfig(root=str(root), val_size=0.0), tmp_path / "run0")
    assert no_val.train_ids == split.train and "val_size" not in no_val.manifests["train"].meta["data"]


def test_a_subset_leaves_the_training_split_alone(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 20, "b": 20})
    p = prepare_data(DataConfig(root=str(root), fraction=0.5), tmp_path / "run")
    same = prepare_data(DataConfig(root=str(root), fraction=0.5, val_size=0.0), tmp_path / "run2")
    assert p.train_ids == same.train_ids  # the pool outside the subset is the validation already


def test_validation_is_held_out_by_patient(tmp_path):
    root = make_covid_ct(tmp_path, {"1NonCOVID": 8, "2COVID": 8, "3CAP": 8}, per_patient=3)
    p = prepare_data(DataConfig(root=str(root), val_size=0.2), tmp_path / "run")
    split = make_split(p.index, "auto", 0.2, 0)
    held = sorted(set(split.train) - set(p.train_ids))
    assert held and not groups_of(p.index, held) & groups_of(p.index, p.train_ids)


def test_too_few_images_hold_nothing_out(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 2, "b": 2})
    idx = prepare_data(DataConfig(root=str(root), val_size=0.0), tmp_path / "r").index
    assert hold_out(idx, [0, 2], 0.1, "stratified", 0) == ([0, 2], [])


def test_bad_val_size_names_the_fix():
    with pytest.raises(EdgeKDError, match=r"data.val_size=1.5 .*fix"):
        DataConfig(val_size=1.5).validate()
