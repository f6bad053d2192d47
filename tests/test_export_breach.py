"""A verify threshold breach makes `edgekd export` / `edgekd verify` exit non-zero, naming the
artifact and the reason. Forced with a deliberately useless calibration set (flat grey images)."""

from __future__ import annotations

import json

import pytest

from edgekd.cli import main

pytest.importorskip("timm")
from edgekd.export.testing import cached_tiny_run, write_constant_manifest  # noqa: E402


@pytest.fixture(scope="module")
def bad_export(tmp_path_factory):
    run = cached_tiny_run(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "convnext")
    calib = write_constant_manifest(run)
    out = tmp_path_factory.mktemp("bad_export")
    return run, out, calib


def test_bad_calibration_fails_verify(bad_export, capsys):
    run, out, calib = bad_export
    rc = main(["export", "--run", str(run), "--target", "onnx", "--precision", "int8", "--calib-data", str(calib),
               "--no-bench", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "FAILED onnx-int8" in captured.err and str(out / "onnx" / "model.int8.onnx") in captured.err
    assert "accuracy drop" in captured.err or "agreement" in captured.err
    rep = json.loads((out / "report.json").read_text())
    row = {a["name"]: a for a in rep["artifacts"]}["onnx-int8"]
    assert row["passed"] is False and row["reasons"]
    assert any("calibration uses 16 images" in n for n in rep["notes"])  # small-calibration warning recorded
    assert "FAIL:" in (out / "report.md").read_text()


def test_verify_cli_exits_1_and_thresholds_are_configurable(bad_export, capsys):
    run, out, _ = bad_export
    art = str(out / "onnx" / "model.int8.onnx")
    assert main(["verify", "--run", str(run), art]) == 1
    assert "FAILED" in capsys.readouterr().err
    # with thresholds loosened to "anything goes" the same artifact passes
    assert main(["verify", "--run", str(run), art, "--threshold", "int8.drop=100", "--threshold", "int8.agreement=0"]) == 0
    assert main(["verify", "--run", str(run), art, "--threshold", "int8.speed=3"]) == 2  # malformed override
