"""Splits: stratified, patient-disjoint, official, deterministic per seed; subsets and caps."""

from __future__ import annotations

import pytest

from edgekd.data import cap_per_class, discover, draw_subset, make_split
from edgekd.data.index import DataWarning, DatasetIndex, Sample
from edgekd.errors import EdgeKDError
from tests.fixtures_data import make_brain_mri, make_covid_ct


def synthetic(counts: list[int], groups: int | None = None) -> DatasetIndex:
    """An index without files: splits only look at labels and groups."""
    samples, n = [], 0
    for label, c in enumerate(counts):
        for _ in range(c):
            samples.append(Sample(f"/x/{n}.png", label, f"g{n % groups}" if groups else None))
            n += 1
    return DatasetIndex("/x", "folder", [f"c{k}" for k in range(len(counts))], samples)


def test_stratified_80_20_deterministic():
    idx = synthetic([100, 50, 30, 20])
    a, b = make_split(idx, seed=0), make_split(idx, seed=0)
    assert a == b
    assert make_split(idx, seed=1) != a
    assert sorted(a.train + a.test) == list(range(len(idx)))
    assert len(a.test) == 40
    assert idx.counts(a.test) == {"c0": 20, "c1": 10, "c2": 6, "c3": 4}


def test_group_split_is_patient_disjoint_and_stratified(tmp_path):
    idx = discover(make_covid_ct(tmp_path, {"1NonCOVID": 10, "2COVID": 10, "3CAP": 10}, per_patient=2))
    for seed in (0, 1, 2):
        sp = make_split(idx, "group", seed=seed)
        g_train = {idx.samples[i].group for i in sp.train}
        g_test = {idx.samples[i].group for i in sp.test}
        assert not g_train & g_test
        assert all(n > 0 for n in idx.counts(sp.test).values())
        assert 0.1 <= len(sp.test) / len(idx) <= 0.3
    assert make_split(idx, "group", seed=3) == make_split(idx, "group", seed=3)


def test_group_split_synthetic_many_groups():
    idx = synthetic([60, 40, 20], groups=30)
    sp = make_split(idx, "group", seed=0)
    assert not {idx.samples[i].group for i in sp.train} & {idx.samples[i].group for i in sp.test}


def test_group_split_needs_groups():
    with pytest.raises(EdgeKDError, match="no patient/group ids"):
        make_split(synthetic([5, 5]), "group")


def test_official_split_uses_training_testing(tmp_path):
    idx = discover(make_brain_mri(tmp_path, 3, 2))
    sp = make_split(idx, "official")
    assert all(idx.samples[i].source_split == "train" for i in sp.train)
    assert all(idx.samples[i].source_split == "test" for i in sp.test)
    assert (len(sp.train), len(sp.test)) == (12, 8)
    with pytest.raises(EdgeKDError, match="no official"):
        make_split(synthetic([5, 5]), "official")


def test_subsets_stratified_nonempty_deterministic_and_differ_per_draw():
    idx = synthetic([400, 200, 30, 5])
    sp = make_split(idx, seed=0)
    draws = [draw_subset(idx, sp.train, 0.01, draw=d, seed=0) for d in range(5)]
    for sub in draws:
        assert set(sub) <= set(sp.train)
        counts = idx.counts(sub)
        assert all(n >= 1 for n in counts.values())
        assert counts["c0"] == round(0.01 * idx.counts(sp.train)["c0"])
    assert len({tuple(s) for s in draws}) == 5
    assert draw_subset(idx, sp.train, 0.01, draw=2, seed=0) == draws[2]
    assert draw_subset(idx, sp.train, 0.05, 0, 0) != draw_subset(idx, sp.train, 0.05, 0, 1)
    assert draw_subset(idx, sp.train, 1.0) == sp.train


def test_subset_errors():
    idx = synthetic([10, 10, 3])
    train = [i for i, s in enumerate(idx.samples) if s.label != 2]  # class c2 has no training images
    with pytest.raises(EdgeKDError, match="c2"):
        draw_subset(idx, train, 0.1)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(EdgeKDError, match="fraction"):
            draw_subset(idx, list(range(len(idx))), bad)


def test_cap_per_class():
    idx = synthetic([50, 3])
    capped = cap_per_class(idx, list(range(len(idx))), 5, seed=0)
    assert idx.counts(capped) == {"c0": 5, "c1": 3}
    assert capped == cap_per_class(idx, list(range(len(idx))), 5, seed=0)
    assert cap_per_class(idx, [0, 1], None) == [0, 1]


def test_split_errors():
    with pytest.raises(EdgeKDError, match="fewer than 2"):
        make_split(synthetic([10, 1]))
    with pytest.raises(EdgeKDError, match="unknown split mode"):
        make_split(synthetic([5, 5]), "random")
    with pytest.raises(EdgeKDError, match="test_size"):
        make_split(synthetic([5, 5]), test_size=1.5)


def test_group_split_with_tiny_classes_is_a_user_error_and_auto_falls_back():
    idx = synthetic([4, 4], groups=6)  # 6 patients, but no class holds the 5 images 5 folds need
    with pytest.raises(EdgeKDError, match="fewer than 5 images"):
        make_split(idx, "group")
    with pytest.warns(DataWarning, match="patient-level split is impossible here"):
        assert make_split(idx).record.mode == "stratified"
