"""Torch CAMs (`edgekd explain --run`): maps land where the model looks, ViT tokens go to the
right patch, and a run's S / S' / teacher come out side by side in a gallery."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")
import timm  # noqa: E402

from edgekd.explain.cam import CamConfig, compute_cams, target_layer, vit_reshape  # noqa: E402
from edgekd.shared.render import peak  # noqa: E402
from tests.explain_models import RegionNet, in_region, region_share, textures, write_pngs  # noqa: E402
from tests.test_train_e2e import tiny  # noqa: E402,F401  (fixture: 4 class folders of 32 px PNGs)

TINY_VIT = dict(img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2, num_classes=3)


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_cam_peaks_where_the_model_looks(method):
    torch.manual_seed(0)
    res = compute_cams(RegionNet(), torch.from_numpy(textures(3)), CamConfig(method))
    assert res.layer == "features" and res.maps.shape == (3, 32, 32)
    assert res.targets == [1, 1, 1]
    for cam in res.maps:
        assert in_region(peak(cam)), peak(cam)
        assert region_share(cam) > 0.8, region_share(cam)


def test_vit_tokens_reshape_to_their_patch():
    """Token k (after the class token) belongs to patch row k // 4, column k % 4 of the 4x4 grid."""
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT)
    reshape = vit_reshape(vit)
    tokens = torch.zeros(2, 1 + 16, 5)
    tokens[:, 0] = 99.0  # the class token must be dropped
    tokens[0, 1 + 6, 2] = 1.0  # patch (1, 2), channel 2
    tokens[1, 1 + 13, 4] = 1.0  # patch (3, 1), channel 4
    grid = reshape(tokens)
    assert grid.shape == (2, 5, 4, 4) and grid.max() == 1.0
    assert grid[0, 2, 1, 2] == 1.0 and grid[1, 4, 3, 1] == 1.0 and grid.sum() == 2.0


def test_vit_gradcam_uses_patch_tokens():
    """At the final norm the patch tokens get no gradient (the head reads the class token), so
    the map would be flat; the chosen layer must give a real map at input resolution."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT)
    res = compute_cams(vit, torch.randn(2, 3, 32, 32), CamConfig("gradcam"))
    assert res.layer == "blocks.1.norm1" and res.maps.shape == (2, 32, 32)
    assert np.isfinite(res.maps).all() and all(m.std() > 0.05 for m in res.maps)


def test_cnn_layer_is_the_last_feature_map():
    x = torch.randn(1, 3, 32, 32)
    lite = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)
    cnx = timm.create_model("convnext_femto", pretrained=False, num_classes=2, depths=(1, 1, 1, 1))
    assert target_layer(lite, x) == "bn2" and target_layer(cnx, x) == "stages"


def _tiny_run(run, seeds: dict[str, int]) -> None:
    from tests.export_fixtures import TINY_MODELS
    from edgekd.models import save_student
    from edgekd.shared.card import StudentCard

    arch, kw = TINY_MODELS["convnext"]
    pp = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bicubic", "crop_pct": 1.0}
    for stem, seed in seeds.items():
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, num_classes=3, **kw)
        save_student(model, run / f"{stem}.safetensors", StudentCard(
            arch, 3, ["a", "b", "c"], {"depths": [1, 1, 2, 1], "ls_init_value": 1.0}, pp, method="kd"))


def test_explain_run_side_by_side_with_dicom(tmp_path):
    from pydicom.data import get_testdata_file

    from edgekd.cli import main

    run = tmp_path / "run"
    _tiny_run(run, {"model": 0, "aux": 1, "teacher": 2})
    imgs = tmp_path / "images"
    write_pngs(imgs / "pngs", 2)
    (imgs / "series").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), imgs / "series" / "slice_001")  # no suffix: found by DICM magic
    out = tmp_path / "gallery"
    assert main(["explain", "--run", str(run), str(imgs), "--method", "gradcam", "--out", str(out)]) == 0
    rec = json.loads((out / "explanations.json").read_text())
    assert [r["model"] for r in rec[:3]] == ["S", "S' (aux)", "teacher"] and len(rec) == 9
    assert {r["source"].rsplit("/", 1)[-1] for r in rec} == {"img_0.png", "img_1.png", "slice_001"}
    assert all((out / r["overlay"]).is_file() for r in rec) and (out / "gallery.png").is_file()
    md = (out / "gallery.md").read_text()
    assert "| input | S | S' (aux) | teacher |" in md and md.count("![") == 12


def test_model_card_links_the_gallery(tmp_path):
    from edgekd.evaluation import EXPLAIN_HEADING, link_gallery

    card = tmp_path / "MODEL_CARD.md"
    card.write_text(f"# card\n\n## Limitations\n- x\n\n{EXPLAIN_HEADING}\n- No gallery yet\n")
    for method in ("gradcam", "scorecam"):  # a second gallery replaces the link, never appends
        link_gallery(tmp_path, tmp_path / "explain" / method / "gallery.md", method)
    text = card.read_text()
    assert text.count(EXPLAIN_HEADING) == 1 and "No gallery" not in text and "- x" in text
    assert "[explain/scorecam/gallery.md](explain/scorecam/gallery.md)" in text and "gradcam" not in text


def test_explain_run_teacher_from_config_and_errors(tmp_path, capsys):
    """An `ours` run stores no teacher: it is rebuilt from config.yaml (here random-init, offline)."""
    from edgekd.cli import main
    from edgekd.config import load_config, save_config
    from edgekd.explain.run import run_models

    run = tmp_path / "run"
    _tiny_run(run, {"model": 0})
    cfg = load_config(None, ["method=ours", "model.teacher=resnet10t", "model.teacher_pretrained=false"])
    save_config(cfg, run / "config.yaml")
    models, notes = run_models(run)
    assert [m.label for m in models] == ["S", "teacher"]
    assert models[1].model.num_classes == 1000 and any("aux.safetensors" in n for n in notes)
    assert any("resnet10t" in n and "ImageNet" in n for n in notes)
    write_pngs(tmp_path / "im", 1)
    assert main(["explain", "--run", str(run), str(tmp_path / "im"), "--models", "student,nope"]) == 2
    assert main(["explain", "--run", str(run), str(tmp_path / "missing.png")]) == 2
    assert main(["explain", "--run", str(run), str(tmp_path / "im"), "--method", "occlusion"]) == 2
    err = capsys.readouterr().err
    assert "unknown --models nope" in err and "does not exist" in err and "--artifact" in err


@pytest.mark.parametrize("method, labels", [("kd", ["S", "teacher"]), ("ours", ["S", "S' (aux)", "teacher"])])
def test_trained_vit_run_explains_side_by_side(tiny, tmp_path, method, labels):
    """A real trainer run: kd shows its fine-tuned teacher, ours shows S' and the weight donor."""
    from edgekd.cli import main
    from tests.test_train_e2e import run

    run(tiny, tmp_path / "r", f"method={method}")
    assert main(["explain", "--run", str(tmp_path / "r"), "--sample", "4", "--method", "gradcam"]) == 0
    rec = json.loads((tmp_path / "r" / "explain" / "gradcam" / "explanations.json").read_text())
    assert [r["model"] for r in rec[: len(labels)]] == labels and len(rec) == 4 * len(labels)
    classes = {"alpha", "beta", "gamma", "delta"}
    assert all(r["predicted"] in classes for r in rec if r["model"] != "teacher" or method == "kd")
    assert "explain/gradcam/gallery.md" in (tmp_path / "r" / "MODEL_CARD.md").read_text()
