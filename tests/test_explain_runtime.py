"""Torch-free explanations of artifacts: occlusion through ONNX Runtime lands where the model
looks, drift metrics separate "same evidence" from "evidence moved", and `edgekd explain
--artifact` / `edgekd predict` on folders and DICOM series run with torch blocked."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from edgekd.shared.render import peak  # noqa: E402
from edgekd.export.explain_runtime import DriftProbe  # noqa: E402
from edgekd.shared.saliency import occlusion_maps, rank_corr, top_iou  # noqa: E402
from edgekd.export.runtimes import open_runner  # noqa: E402
from tests.explain_models import export_region_onnx, in_region, region_share, textures, write_pngs  # noqa: E402
from tests.test_export_runtime_only import _run_blocked  # noqa: E402


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return export_region_onnx(tmp_path_factory.mktemp("region_onnx"))


class Mirrored:
    """Same network on the left-right mirrored image: same top-1 here, evidence moved."""

    def __init__(self, runner):
        self.runner = runner

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.runner.predict(np.ascontiguousarray(x[..., ::-1]))


def test_occlusion_through_onnxruntime_peaks_in_region(artifact):
    maps, probs = occlusion_maps(open_runner(artifact).predict, textures(3))
    assert maps.shape == (3, 32, 32) and (probs.argmax(1) == 1).all()
    for m in maps:
        assert in_region(peak(m)) and region_share(m) > 0.8, (peak(m), region_share(m))


def test_map_agreement_metrics():
    a = np.arange(64, dtype=np.float64).reshape(8, 8)
    assert rank_corr(a, a) == pytest.approx(1.0) and rank_corr(a, -a) == pytest.approx(-1.0)
    assert rank_corr(a, 3 * a + 1) == pytest.approx(1.0)  # ranks, not values
    assert top_iou(a, a) == 1.0 and top_iou(a, -a) == 0.0
    ties = np.repeat(np.arange(4.0), 16).reshape(8, 8)  # blocky maps (occlusion) have many ties
    assert rank_corr(ties, ties) == pytest.approx(1.0)


def test_drift_probe_sees_moved_evidence(artifact):
    ref = open_runner(artifact)
    probe = DriftProbe(ref, images=4)
    for x in np.split(textures(6, seed=1), 3):  # a stream of batches; only the first 4 images are kept
        probe.take(x)
    same, moved = probe.measure(open_runner(artifact)), probe.measure(Mirrored(ref))
    assert same.n == moved.n == 4
    assert same.rank_corr == pytest.approx(1.0) and same.top_iou == pytest.approx(1.0)
    assert (Mirrored(ref).predict(textures(4, seed=1)).argmax(1) == 1).all()  # top-1 unchanged ...
    assert moved.rank_corr < 0.3 and moved.top_iou < 0.1  # ... but the evidence moved


def test_verify_reports_drift_and_threshold_fails(artifact):
    from edgekd.export.verify import Thresholds, verify

    ref = open_runner(artifact)
    batches = [(x, np.ones(len(x), int)) for x in np.split(textures(8, seed=2), 2)]
    t = Thresholds(min_map_rank_corr=0.5)
    same, moved = verify({"same": (open_runner(artifact), "int8"), "moved": (Mirrored(ref), "int8")}, ref,
                         batches, t, drift_images=4)
    assert same.passed and same.map_rank_corr == pytest.approx(1.0) and same.agreement_pct == 100.0
    assert moved.agreement_pct == 100.0 and not moved.passed
    assert moved.map_rank_corr < 0.3 and "explanation drift" in moved.reasons[0]
    plain = verify({"same": (open_runner(artifact), "fp32")}, ref, batches)[0]
    assert plain.map_rank_corr is None and plain.passed  # off unless asked for


def test_explain_and_predict_without_torch(artifact, tmp_path):
    from pydicom.data import get_testdata_file

    write_pngs(tmp_path / "imgs" / "nested", 3, seed=3)
    series = tmp_path / "series"
    series.mkdir()
    for i in range(2):  # a DICOM series as exported by many PACS: numbered slices without a suffix
        shutil.copy(get_testdata_file("CT_small.dcm"), series / f"IM{i:04d}")
    out, res_csv, res_json = tmp_path / "explain", tmp_path / "r.csv", tmp_path / "r.json"
    r = _run_blocked(f"""
        from edgekd.cli import main
        assert main(["explain", "--artifact", {str(artifact)!r}, {str(tmp_path / "imgs")!r}, "--out", {str(out)!r}]) == 0
        assert main(["predict", {str(artifact)!r}, {str(series)!r}, {str(tmp_path / "imgs" / "**" / "*.png")!r},
                     "--top-k", "2", "--out", {str(res_csv)!r}, "--allow-unverified"]) == 0
        assert main(["predict", {str(artifact)!r}, {str(series)!r}, "--out", {str(res_json)!r},
                     "--allow-unverified"]) == 0  # a hand-built test artifact: never verified
    """)
    assert r.returncode == 0 and "NO_TORCH_OK" in r.stdout, r.stderr[-3000:]
    rec = json.loads((out / "explanations.json").read_text())
    assert len(rec) == 3 and all(in_region(x["peak"]) for x in rec), rec
    assert (out / "gallery.md").is_file() and (out / "gallery.png").is_file()
    rows = list(csv.DictReader(res_csv.open()))
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["IM0000", "IM0001", "img_0.png", "img_1.png", "img_2.png"]
    assert set(rows[0]) == {"path", "class", "prob", "class_1", "prob_1", "class_2", "prob_2"}
    js = json.loads(res_json.read_text())
    assert len(js) == 2 and js[0]["class"] in ("elsewhere", "region") and 0 <= js[0]["prob"] <= 1


def test_faithfulness_prefers_the_map_of_the_real_evidence(artifact):
    """Deleting R first must hurt RegionNet fast (low deletion AUC); a map of everything but R
    must score clearly worse. (Insertion saturates for this model: it reads local brightness,
    which the blurred canvas keeps, so there it may only be no worse.)"""
    from edgekd.explain.faithfulness import curves
    from tests.explain_models import REGION

    right = np.zeros((32, 32))
    right[REGION] = 1.0
    run = open_runner(artifact).predict
    for x in textures(2, seed=4):
        good, bad = curves(run, x, right, 1), curves(run, x, 1.0 - right, 1)
        assert good.deletion_auc < bad.deletion_auc - 0.3 and good.insertion_auc >= bad.insertion_auc - 0.01, (good, bad)
