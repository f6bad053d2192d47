"""Temperature scaling that survives export (issue 17): fitted at the end of training on held-out
images, stored in the student's card, divided into the exported graph, applied by verify's PyTorch
reference and announced by `edgekd predict`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("timm")
import torch  # noqa: E402

from edgekd.errors import EdgeKDError  # noqa: E402
from edgekd.shared.card import StudentCard, card_path  # noqa: E402
from edgekd.shared.probs import softmax  # noqa: E402
from tests.export_fixtures import cached_tiny_run  # noqa: E402
from tests.test_train_e2e import run, tiny  # noqa: E402,F401  (tiny: the trainer's tiny dataset, a fixture)


def _images(run_dir: Path, card: StudentCard) -> tuple[np.ndarray, np.ndarray]:
    from edgekd.data import Manifest
    from edgekd.export.batches import load_batch

    items = Manifest.load(run_dir / "data" / "test.json").items
    return load_batch([p for p, _ in items], card.preprocess), np.array([y for _, y in items])


@pytest.fixture(scope="module")
def overconfident(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """The tiny exported-run ViT with its classifier scaled x5 (logits x5: far too sure of itself),
    calibrated through the trainer's code. Its test split is too easy to show it (every image right), so
    the images are 4 noisy copies of the test split (about 1 in 5 wrong, each with a probability near 1);
    T is fitted on half of them and scored on the other half. Returns (weights with the calibrated card,
    evaluation images, their labels)."""
    from edgekd.evaluation import fit_calibration
    from edgekd.models import load_student, save_student

    src = cached_tiny_run(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "vit")
    model, card = load_student(src / "model.safetensors")
    with torch.no_grad():
        model.head.weight.mul_(5)
        model.head.bias.mul_(5)
    x, y = _images(src, card)
    x, y = np.concatenate([x] * 4), np.concatenate([y] * 4)
    x = (x + np.random.default_rng(2).normal(0, 3, x.shape)).astype(np.float32)
    fit, held = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    with torch.no_grad():
        held_logits = model(torch.from_numpy(x[held])).numpy()
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x[fit]),
                                                                     torch.from_numpy(y[fit])), batch_size=8)
    cal = fit_calibration(model, val, (held_logits, y[held]))
    weights = tmp_path_factory.mktemp("overconfident") / "model.safetensors"
    save_student(model, weights, replace(card, calibration=cal.card_entry()))
    return weights, x[held], y[held]


def _onnx(weights: Path, out: Path):
    import onnx

    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx
    from edgekd.export.source import TorchRunner

    ref = TorchRunner(weights, threads=1)
    path = export_onnx(ref.model, ref.card, out, OnnxExportConfig(static_batch=0)).dynamic
    graph = onnx.load(str(path)).graph
    last = next(n for n in graph.node if graph.output[0].name in n.output)
    return ref, path, graph.output[0].name, last.op_type


def _ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model(overconfident):
    card = StudentCard.load(card_path(overconfident[0]))
    report = card.calibration
    assert card.temperature == report["temperature"] > 2  # logits x5 need a large T
    assert report["after"]["ece"] < report["before"]["ece"] - 0.05
    assert report["after"]["nll"] < report["before"]["nll"]


def test_exported_onnx_carries_the_temperature_in_graph_and_metadata(overconfident, tmp_path):
    from edgekd.export.metadata import read_metadata

    weights, x, _ = overconfident
    ref, path, output, last_op = _onnx(weights, tmp_path)
    t = ref.card.temperature
    assert output == "logits" and last_op == "Div"
    assert read_metadata(path)["temperature"] == pytest.approx(t)
    p_onnx = softmax(_ort_logits(path, x))
    np.testing.assert_allclose(p_onnx, softmax(ref.predict(x)), atol=1e-5)  # verify's reference: same T
    with torch.no_grad():
        raw = ref.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(p_onnx, softmax(raw, t), atol=1e-5)
    assert np.abs(p_onnx - softmax(raw)).max() > 0.05  # calibration really changed the probabilities


def test_an_uncalibrated_or_old_card_exports_with_t_1_and_no_div(overconfident, tmp_path):
    """An edgekd <= 0.1 card (no card_version, no calibration) is what calibration=none writes too."""
    from edgekd.export.metadata import read_metadata

    weights, x, _ = overconfident
    old = tmp_path / "old" / "model.safetensors"
    old.parent.mkdir()
    old.write_bytes(weights.read_bytes())
    d = json.loads(card_path(weights).read_text())
    del d["calibration"], d["card_version"]
    card_path(old).write_text(json.dumps(d))
    ref, path, output, last_op = _onnx(old, tmp_path / "onnx")
    assert ref.card.temperature == 1.0 and output == "logits" and last_op != "Div"
    assert read_metadata(path)["temperature"] == 1.0
    with torch.no_grad():
        raw = ref.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_ort_logits(path, x), raw, atol=1e-4)


def test_predict_announces_calibrated_probabilities(overconfident, tmp_path, capsys):
    from edgekd.cli import main
    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx
    from edgekd.export.source import TorchRunner

    weights, _, _ = overconfident
    ref = TorchRunner(weights, threads=1)
    path = export_onnx(ref.model, ref.card, tmp_path, OnnxExportConfig(static_batch=0)).dynamic
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(image)
    assert main(["predict", str(path), str(image), "--allow-unverified"]) == 0
    assert f"calibrated (T={ref.card.temperature:.2f})" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["platt", "Temperature"])
def test_calibration_config_is_validated(value):
    from edgekd.config import load_config

    assert load_config(None, ["calibration=none"]).calibration == "none"
    with pytest.raises(EdgeKDError, match="calibration=temperature or calibration=none"):
        load_config(None, [f"calibration={value}"])


def test_trainer_calibrates_model_and_best_and_reports_clinical_metrics(tiny, tmp_path):  # noqa: F811
    d = tmp_path / "r"
    res = run(tiny, d, "optim.epochs=2", "data.fraction=0.5", "val_limit=3")
    cal = res["calibration"]
    assert cal["n_fit"] == 12 and cal["temperature"] > 0 and set(cal["before"]) == {"ece", "brier", "nll"}
    model, best = StudentCard.load(d / "model.json"), StudentCard.load(d / "best.json")
    assert model.calibration == cal and best.calibration is not None and best.temperature > 0
    if best.epoch == model.epoch:
        assert best.calibration == cal
    clinical = res["clinical"]
    assert clinical["interval"]["n_boot"] == 1000 and set(clinical["per_class"]) == {"alpha", "beta", "gamma", "delta"}
    assert {"sensitivity", "specificity", "ppv", "npv", "f1", "auc"} <= set(clinical["per_class"]["alpha"])
    for f in ("confusion_matrix.png", "roc_curves.png", "reliability.png"):
        assert (d / f).stat().st_size > 1000, f
    text = (d / "MODEL_CARD.md").read_text()
    assert "| class | n | sensitivity | specificity | PPV | NPV | F1 | AUC |" in text
    assert f"T = {cal['temperature']:.3f}" in text and "(reliability.png)" in text and "(roc_curves.png)" in text


def test_trainer_without_held_out_images_says_why_calibration_was_skipped(tiny, tmp_path):  # noqa: F811
    d = tmp_path / "r"
    res = run(tiny, d)  # TINY_VIT: data.fraction=1.0, val_limit=null
    assert "val_limit is null" in res["calibration"]["skipped"]
    assert StudentCard.load(d / "model.json").calibration is None
    assert "Skipped: val_limit is null" in (d / "MODEL_CARD.md").read_text()
    res = run(tiny, tmp_path / "n", "data.fraction=0.5", "val_limit=3", "calibration=none")
    assert res["calibration"] == {"skipped": "calibration=none"}
    assert StudentCard.load(tmp_path / "n" / "best.json").temperature == 1.0
