"""A verify threshold breach makes `edgekd export` / `edgekd verify` exit non-zero, naming the
artifact and the reason. Forced with a deliberately useless calibration set (flat grey images)
and the accuracy-aware search switched off; with the search on (the default), the same bad
calibration is rescued by keeping the most sensitive nodes in float, judged on training images."""

from __future__ import annotations

import json

import pytest

from edgekd.cli import main

pytest.importorskip("timm")
from tests.export_fixtures import cached_tiny_run, write_constant_manifest  # noqa: E402


@pytest.fixture(scope="module")
def bad_export(tmp_path_factory):
    run = cached_tiny_run(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "convnext")
    calib = write_constant_manifest(run)
    out = tmp_path_factory.mktemp("bad_export")
    return run, out, calib


def test_bad_calibration_fails_verify(bad_export, capsys):
    run, out, calib = bad_export
    rc = main(["export", "--run", str(run), "--target", "onnx", "--precision", "int8", "--calib-data", str(calib),
               "--no-bench", "--no-accuracy-control", "--drift-threshold", "1.01", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    # a failed artifact never sits at its final path: it is moved to OUT/failed/ with its reasons
    assert "FAILED onnx-int8" in captured.err and str(out / "failed" / "onnx" / "model.int8.onnx") in captured.err
    assert not (out / "onnx" / "model.int8.onnx").exists()
    assert "accuracy drop" in captured.err or "agreement" in captured.err
    rep = json.loads((out / "report.json").read_text())
    row = {a["name"]: a for a in rep["artifacts"]}["onnx-int8"]
    assert row["passed"] is False and row["reasons"]
    assert any("explanation drift" in r for r in row["reasons"])  # --drift-threshold reaches export's verify
    assert any("calibration uses 16 images" in n for n in rep["notes"])  # small-calibration warning recorded
    assert "FAIL:" in (out / "report.md").read_text()


def test_verify_cli_exits_1_and_thresholds_are_configurable(bad_export, capsys):
    run, out, _ = bad_export
    art = str(out / "failed" / "onnx" / "model.int8.onnx")
    assert main(["verify", "--run", str(run), art]) == 1
    assert "FAILED" in capsys.readouterr().err
    # with thresholds loosened to "anything goes" the same artifact passes
    # (the per-class gate is its own check: off here, so only the overall thresholds judge)
    assert main(["verify", "--run", str(run), art, "--threshold", "int8.drop=100", "--threshold", "int8.agreement=0",
                 "--no-gate"]) == 0
    assert main(["verify", "--run", str(run), art, "--threshold", "int8.speed=3"]) == 2  # malformed override


def test_accuracy_control_rescues_bad_calibration(bad_export, tmp_path):
    """ORT keep-float search and NNCF quantize_with_accuracy_control both reach the target on the
    training-split validation slice, the artifacts then pass verify on the TEST split, and the
    report names the nodes kept float and the latency they cost."""
    run, _, calib = bad_export
    out = tmp_path / "rescued"
    rc = main(["export", "--run", str(run), "--target", "onnx,openvino", "--precision", "int8", "--calib-data", str(calib),
               "--no-bench", "--out", str(out)])
    rep = json.loads((out / "report.json").read_text())
    by = {a["name"]: a for a in rep["artifacts"]}
    assert rc == 0 and by["onnx-int8"]["passed"] and by["openvino-int8"]["passed"], by
    notes = {n.split(":")[0]: n for n in rep["notes"] if n.startswith(("onnx-int8", "openvino-int8"))}
    for name in ("onnx-int8", "openvino-int8"):
        assert "(target agreement >= " in notes[name] and "lower bound clears the 98 % verify bar), drop <= 1 pt: met" in notes[name]
        assert "batch-1 latency all-INT8" in notes[name] and "ms for the float nodes" in notes[name]
    assert "from " + str(run / "data" / "train.json") in rep["int8_validation"]  # training split, not --calib-data
    assert all(-1 <= by[n]["map_rank_corr"] <= 1 for n in ("onnx-int8", "openvino-int8"))  # drift column, on by default
    assert "FLOAT FALLBACK" not in notes["onnx-int8"]  # the rescue keeps only a few convs float
    float_nodes = notes["onnx-int8"].split("float nodes (")[1]
    assert not float_nodes.startswith("0)") and "/Conv" in float_nodes  # node names, not op types
    # grey calibration images make the stem's input range degenerate: both searches must find the stem
    assert "/stem/stem.0/Conv" in float_nodes and "/stem/stem.0/Conv" in notes["openvino-int8"].split("accuracy control")[1]
    assert "nncf.quantize_with_accuracy_control" in notes["openvino-int8"] or "accuracy control (0)" not in notes["openvino-int8"]


def test_mostly_float_int8_is_flagged(bad_export, tmp_path):
    """An "INT8" artifact whose compute mostly runs in float kernels says so at the head of its note."""
    run, _, _ = bad_export
    main(["export", "--run", str(run), "--target", "onnx", "--precision", "int8", "--keep-float", "Conv,Gemm,MatMul",
          "--no-accuracy-control", "--no-bench", "--drift-images", "0", "--out", str(tmp_path)])
    rep = json.loads((tmp_path / "report.json").read_text())
    note = next(n for n in rep["notes"] if n.startswith("onnx-int8:"))
    assert note.startswith("onnx-int8: FLOAT FALLBACK: onnxruntime runs only 0 % ") and " of " in note.split("float nodes (")[1]


def test_calibration_overlapping_test_is_refused(bad_export, capsys):
    run, out, _ = bad_export
    rc = main(["export", "--run", str(run), "--target", "onnx", "--precision", "int8", "--calib-data",
               str(run / "data" / "test.json"), "--out", str(out / "overlap")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "shares 48 image(s) with the test manifest" in err and "--calib-data" in err and "Traceback" not in err
