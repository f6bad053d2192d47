"""The operating point end to end (issue 17 point 4): `--positive-class` chooses a threshold on validation
images, every artifact carries it, verify reports the test sensitivity/specificity at it, `predict` applies it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("timm")
from edgekd.cli import main  # noqa: E402
from edgekd.export.metadata import read_metadata, update_onnx_metadata  # noqa: E402
from edgekd.shared.clinical.operating_point import OperatingPoint  # noqa: E402
from edgekd.shared.probs import softmax  # noqa: E402
from tests.export_fixtures import TinyRunSpec, cached_tiny_run, make_image_folder, write_manifest  # noqa: E402

POSITIVE = "class_1"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The cached tiny ViT run, copied, with a data/val.json of fresh images (never trained on, not test)."""
    src = cached_tiny_run(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "vit")
    run = tmp_path_factory.mktemp("op") / "run"
    run.mkdir()
    for name in ("model.safetensors", "model.json"):
        shutil.copy(src / name, run / name)
    shutil.copytree(src / "data", run / "data")
    classes, val, _ = make_image_folder(run / "val_images", TinyRunSpec(seed=7, train_per_class=20, test_per_class=0))
    write_manifest(run / "data" / "val.json", run / "val_images", classes, val)
    return run


@pytest.fixture(scope="module")
def exported(run) -> Path:
    out = run / "export"
    rc = main(["export", "--run", str(run), "--target", "onnx,openvino", "--precision", "fp32", "--out", str(out),
               "--positive-class", POSITIVE, "--target-sensitivity", "0.9", "--no-bench", "--drift-images", "0"])
    assert rc == 0
    return out


def _reference_probs(run: Path, manifest: Path) -> tuple[np.ndarray, np.ndarray]:
    from edgekd.data import Manifest
    from edgekd.export.batches import load_batch
    from edgekd.export.source import TorchRunner

    ref = TorchRunner(run / "model.safetensors", threads=1)
    items = Manifest.load(manifest).items
    return np.array([y for _, y in items]), softmax(ref.predict(load_batch([p for p, _ in items], ref.card.preprocess)))


def test_threshold_chosen_on_validation_reaches_the_target_there_and_travels_in_every_artifact(run, exported):
    point = OperatingPoint.from_dict(read_metadata(exported / "onnx" / "model.onnx")["operating_point"])
    assert (point.positive_class, point.target_sensitivity) == (POSITIVE, 0.9)
    y, p = _reference_probs(run, run / "data" / "val.json")
    pos = y == point.index
    assert point.n_val == len(y)
    sens = float((p[pos, point.index] >= point.threshold).mean())
    assert sens >= 0.9 and sens == pytest.approx(point.val_sensitivity)
    assert (p[pos, point.index] >= np.nextafter(point.threshold, 1)).mean() < 0.9  # the highest that does
    assert OperatingPoint.from_dict(read_metadata(exported / "openvino" / "model.fp32.xml")["operating_point"]) == point

    report = json.loads((exported / "report.json").read_text())
    assert "validation images of" in report["operating_point"]["validation"]
    assert "val.json" in report["operating_point"]["validation"]
    checks = [v["operating_point"] for v in report["verify"]]
    assert len(checks) == 2 and all(c["artifact"]["point"]["threshold"] == point.threshold for c in checks)
    md = (exported / "report.md").read_text()
    section = md[md.index(f"## Operating point: {POSITIVE}"):]
    assert f"{point.threshold:.4g}" in section and "PyTorch (reference)" in section and "onnx-fp32" in section


def test_verify_reports_the_point_and_without_val_json_says_it_used_training_images(run, exported, tmp_path, capsys):
    bare = tmp_path / "run"
    bare.mkdir()
    for name in ("model.safetensors", "model.json"):
        shutil.copy(run / name, bare / name)
    shutil.copytree(run / "data", bare / "data")
    (bare / "data" / "val.json").unlink()
    js = tmp_path / "verify.json"
    artifact = exported / "onnx" / "model.onnx"
    assert main(["verify", str(artifact), "--run", str(bare), "--positive-class", POSITIVE, "--drift-images", "0",
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "training images of" in out and "the student trained on them" in out
    check = json.loads(js.read_text())[0]["operating_point"]
    assert {"sensitivity", "specificity", "n_positive"} <= set(check["artifact"])
    assert check["artifact"]["sensitivity"]["ci"][0] <= check["artifact"]["sensitivity"]["value"]

    # without --positive-class verify evaluates the threshold the artifact carries (what predict applies)
    assert main(["verify", str(artifact), "--run", str(run), "--drift-images", "0", "--json", str(js)]) == 0
    carried = read_metadata(artifact)["operating_point"]["threshold"]
    assert json.loads(js.read_text())[0]["operating_point"]["artifact"]["point"]["threshold"] == carried


def _test_images(run: Path) -> list[str]:
    from edgekd.data import Manifest

    return [p for p, _ in Manifest.load(run / "data" / "test.json").items]


def test_predict_applies_the_threshold_even_against_the_top_class(run, exported, tmp_path, capsys):
    art = tmp_path / "model.onnx"
    shutil.copy(exported / "onnx" / "model.onnx", art)
    images = _test_images(run)
    assert main(["predict", str(art), *images, "--allow-unverified", "--top-k", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    idx = json.loads((run / "model.json").read_text())["classes"].index(POSITIVE)
    p_pos = np.array([next(t["prob"] for t in r["top"] if t["class"] == POSITIVE) for r in rows])
    other = [i for i, r in enumerate(rows) if r["class"] != POSITIVE]
    i = max(other, key=lambda j: p_pos[j])  # the most positive-looking image the argmax gives to another class
    point = OperatingPoint(POSITIVE, idx, float(p_pos[i]) * 0.99, 0.95, 0.95, 0.5, 10)
    update_onnx_metadata(art, {"operating_point": point.to_dict()})

    assert main(["predict", str(art), images[i], "--allow-unverified"]) == 0
    out, err = capsys.readouterr()
    r = json.loads(out)
    assert r["class"] != POSITIVE and r["positive"] is True
    assert r["call"] == f"{POSITIVE}: POSITIVE (p={p_pos[i]:.3g} >= threshold {point.threshold:.3g})"
    assert f"operating point {POSITIVE} >= {point.threshold:.3g}" in err
    low = int(np.argmin(p_pos))
    assert main(["predict", str(art), images[low], "--allow-unverified", "--out", str(tmp_path / "r.csv")]) == 0
    header, row = (tmp_path / "r.csv").read_text().splitlines()
    assert header.startswith("path,class,prob,positive,call,") and ",False," in row and "NEGATIVE" in row


def test_an_artifact_without_an_operating_point_predicts_as_before(run, tmp_path, capsys):
    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx
    from edgekd.export.source import TorchRunner

    ref = TorchRunner(run / "model.safetensors", threads=1)
    art = export_onnx(ref.model, ref.card, tmp_path, OnnxExportConfig(static_batch=0)).dynamic
    assert "operating_point" not in read_metadata(art)
    assert main(["predict", str(art), _test_images(run)[0], "--allow-unverified"]) == 0
    out, err = capsys.readouterr()
    assert set(json.loads(out)) == {"path", "class", "prob", "top"} and "operating point" not in err


def test_predict_applies_the_point_without_scikit_learn_or_torch(exported, run):
    """A clinic box has the runtime extra only: no scikit-learn, scipy or torch."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules.update(dict.fromkeys(["sklearn", "scipy", "torch", "timm", "torchvision"]))  # None: unimportable
        from edgekd.cli import main
        sys.exit(main(["predict", {str(exported / "onnx" / "model.onnx")!r}, {_test_images(run)[0]!r}]))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f'"call": "{POSITIVE}: ' in r.stdout


@pytest.mark.parametrize("verb", ["export", "verify"])
def test_an_unknown_positive_class_is_a_user_error_naming_the_classes(run, verb, tmp_path, capsys):
    args = ["--run", str(run), "--positive-class", "COVID"]
    argv = [verb, *args, "--out", str(tmp_path / "out")] if verb == "export" else [verb, str(run / "x.onnx"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'COVID' is not one of ['class_0', 'class_1', 'class_2', 'class_3']" in err and "fix:" in err
    assert not (tmp_path / "out").exists()  # export: refused before any work


def test_target_sensitivity_needs_a_positive_class(run, capsys):
    assert main(["export", "--run", str(run), "--target-sensitivity", "0.9"]) == 2
    assert "fix: add --positive-class NAME" in capsys.readouterr().err
