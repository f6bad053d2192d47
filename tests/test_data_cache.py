"""The decoded-image cache returns exactly the uncached pixels and is reused, not rebuilt."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data import Manifest, discover
from edgekd.data.cache import DecodedCache
from edgekd.errors import EdgeKDError
from edgekd.shared.preprocess import PreprocessConfig
from tests.fixtures_data import make_brain_mri


@pytest.fixture()
def mri(tmp_path):
    return discover(make_brain_mri(tmp_path / "mri", 2, 1))


def test_cache_matches_uncached_and_is_reused(mri, tmp_path):
    import torch

    from edgekd.data.torchdata import ImageDataset, eval_transform

    cfg = PreprocessConfig((3, 24, 24), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    ids = list(range(0, len(mri), 2))
    cache = DecodedCache.build(mri, cfg, tmp_path / "cache", ids=ids)
    assert cache.array.shape == (len(ids), 24, 24, 3) and cache.array.dtype == np.uint8
    plain = ImageDataset(mri, ids, eval_transform(cfg))
    cached = ImageDataset(mri, ids, eval_transform(cfg), cache=cache)
    for i in range(len(ids)):
        (a, ya), (b, yb) = plain[i], cached[i]
        assert ya == yb and torch.equal(a, b)
    mtime = cache.path.stat().st_mtime_ns
    again = DecodedCache.build(Manifest.from_index(mri, ids), cfg, tmp_path / "cache")
    assert again.path == cache.path and again.path.stat().st_mtime_ns == mtime
    other = DecodedCache.build(mri, PreprocessConfig((3, 16, 16)), tmp_path / "cache", ids=ids)
    assert other.path != cache.path
    assert len(list((tmp_path / "cache").glob("*.partial"))) == 0


def test_cache_pickles_without_array_and_rejects_other_lists(mri, tmp_path):
    import pickle

    from edgekd.data.torchdata import ImageDataset

    cfg = PreprocessConfig((3, 16, 16))
    cache = DecodedCache.build(mri, cfg, tmp_path / "c", ids=[0, 1, 2])
    _ = cache.array
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._arr is None and np.array_equal(clone[1], cache[1])
    with pytest.raises(EdgeKDError, match="different file list"):
        ImageDataset(mri, [0, 1, 3], None, cache=cache)


def test_manifest_dataset_through_dataloader(mri, tmp_path):
    import torch

    from edgekd.data.torchdata import ImageDataset, eval_transform

    m = Manifest.from_index(mri)
    cfg = PreprocessConfig((3, 16, 16))
    ds = ImageDataset(m, None, eval_transform(cfg), cache=DecodedCache.build(m, cfg, tmp_path / "c"))
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 3, 16, 16) and y.tolist() == m.labels[:4]


def test_build_datasets_for_prepared_data(tmp_path):
    from edgekd.data import DataConfig, prepare_data
    from edgekd.data.torchdata import build_datasets

    root = make_brain_mri(tmp_path / "mri", 3, 1)
    p = prepare_data(DataConfig(root=str(root)), tmp_path / "run")
    train, test = build_datasets(p, PreprocessConfig((3, 16, 16)), cache_dir=str(tmp_path / "cache"))
    assert len(train) == len(p.train_ids) and len(test) == len(p.test_ids)
    assert train[0][0].shape == (3, 16, 16) and test.cache is not None
