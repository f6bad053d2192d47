"""Preprocessing: timm config without downloads, numpy == torch eval transform, torch-free imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgekd.errors import EdgeKDError
from edgekd.models import resolve_preprocess
from edgekd.shared.preprocess import PreprocessConfig, preprocess_numpy, resize_image
from tests.fixtures_data import image_array


def test_resolve_from_timm_pretrained_cfg():
    lite0 = resolve_preprocess("tf_efficientnet_lite0")
    assert lite0.input_size == (3, 224, 224) and lite0.mean == (0.5, 0.5, 0.5) and lite0.std == (0.5, 0.5, 0.5)
    assert lite0.interpolation == "bicubic" and lite0.crop_pct == 1.0
    assert resolve_preprocess("tf_efficientnet_lite2").input_size == (3, 260, 260)
    small = resolve_preprocess("convnext_femto", image_size=64)
    assert small.input_size == (3, 64, 64) and small.mean == (0.485, 0.456, 0.406)
    with pytest.raises(EdgeKDError, match="unknown timm model"):
        resolve_preprocess("no_such_model_xyz")


def test_config_dict_round_trip():
    cfg = PreprocessConfig((3, 48, 40), (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bilinear", 0.9)
    d = cfg.to_dict()
    assert d["input_size"] == [3, 48, 40]
    assert PreprocessConfig.from_dict(d) == cfg
    with pytest.raises(EdgeKDError, match="interpolation"):
        PreprocessConfig(interpolation="cubic")


@pytest.mark.parametrize("cfg", [
    PreprocessConfig((3, 32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),
    PreprocessConfig((3, 40, 24), interpolation="bilinear"),
    PreprocessConfig((3, 32, 32), crop_pct=0.875),
])
def test_numpy_equals_torch_eval_transform(cfg):
    from edgekd.data.torchdata import eval_transform

    for img in (Image.fromarray(image_array(57, 45, 1)), Image.fromarray(image_array(20, 70, 2, channels=3))):
        a = preprocess_numpy(img, cfg)
        b = eval_transform(cfg)(img).numpy()
        assert a.dtype == np.float32 and a.shape == cfg.input_size
        assert np.abs(a - b).max() < 1e-5


def test_grey_replicated_and_squash_resize():
    cfg = PreprocessConfig((3, 16, 32), (0, 0, 0), (1, 1, 1))
    x = preprocess_numpy(Image.fromarray(image_array(50, 10, 3)), cfg)
    assert x.shape == (3, 16, 32)
    assert np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])
    assert resize_image(Image.new("L", (64, 64)), cfg).size == (32, 16)  # whole image, no crop


def test_train_transform_shapes_and_config():
    import torch

    from edgekd.data.torchdata import AugConfig, train_transform

    cfg = PreprocessConfig((3, 32, 32))
    aug = AugConfig(hflip=0.5, rotation=5.0)
    assert AugConfig.from_dict(aug.to_dict()) == aug
    torch.manual_seed(0)
    t = train_transform(cfg, aug)
    img = Image.fromarray(image_array(50, 60, 0))
    x, y = t(img), t(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert not torch.equal(x, y)  # random
    none = train_transform(cfg, AugConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), rotation=0, brightness=0, contrast=0))
    square = Image.fromarray(image_array(32, 32, 0))
    from edgekd.data.torchdata import eval_transform

    assert torch.allclose(none(square), eval_transform(cfg)(square), atol=1e-5)


def test_data_and_preprocess_import_without_torch():
    code = (
        "import sys; import edgekd.data, edgekd.shared.preprocess, edgekd.data.cache, edgekd.data.cli;"
        "bad = [m for m in ('torch', 'timm', 'sklearn', 'pandas', 'torchvision') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
