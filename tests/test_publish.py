"""Artifacts reach their final paths only after verify, each with a marker; failed ones go to
OUT/failed/; predict/bench refuse anything not marked verified; another run's --out is refused."""

from __future__ import annotations

import json

import pytest

from edgekd.errors import EdgeKDError
from edgekd.export.artifacts import Artifact
from edgekd.export.publish import publish, read_verification, refuse_other_run, require_verified, staging_dir


def _staged(out, name, rel):
    path = out / ".staging" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(name.encode())
    return Artifact(name, rel.split("/")[0], "int8" if "int8" in rel else "fp32", path=str(path))


def test_publish_moves_passed_and_failed_and_drops_candidates(tmp_path):
    out = tmp_path / "out"
    (out / "onnx").mkdir(parents=True)
    (out / "onnx" / "model.old-run.onnx").write_bytes(b"stale")  # a previous export's leftover
    stage = staging_dir(out)
    good, bad = _staged(out, "onnx-fp32", "onnx/model.onnx"), _staged(out, "onnx-int8", "onnx/model.int8.onnx")
    (stage / "onnx" / "model.int8.candidate3.onnx").write_bytes(b"uncertified")  # a search candidate
    publish(out, stage, [good, bad], {"onnx-fp32": ("pass", []), "onnx-int8": ("fail", ["agreement 97 %"])}, "abc")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "failed/onnx/model.int8.onnx", "failed/onnx/model.int8.onnx.verified.json",
        "onnx/model.onnx", "onnx/model.onnx.verified.json"]
    assert good.path == str(out / "onnx" / "model.onnx") and bad.path == str(out / "failed" / "onnx" / "model.int8.onnx")
    assert read_verification(good.path).verdict == "pass" and read_verification(bad.path).reasons == ["agreement 97 %"]


def test_only_a_verified_unchanged_artifact_is_accepted(tmp_path):
    out = tmp_path / "out"
    stage = staging_dir(out)
    arts = [_staged(out, "onnx-fp32", "onnx/model.onnx"), _staged(out, "onnx-int8", "onnx/model.int8.onnx"),
            _staged(out, "openvino-fp32", "openvino/model.xml")]
    publish(out, stage, arts, {"onnx-fp32": ("pass", []), "onnx-int8": ("fail", ["drop 3 pt"])}, "abc")
    assert require_verified(arts[0].path, False).verdict == "pass"
    with pytest.raises(EdgeKDError, match="FAILED verify: drop 3 pt"):
        require_verified(arts[1].path, False)
    with pytest.raises(EdgeKDError, match="exported with --no-verify"):
        require_verified(arts[2].path, False)
    with open(arts[0].path, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(EdgeKDError, match="not verified, or changed since"):
        require_verified(arts[0].path, False)
    assert require_verified(arts[0].path, True) is None  # --allow-unverified


def test_an_out_holding_another_students_export_is_refused(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"weights_sha256": "1111aaaa"}))
    refuse_other_run(tmp_path, "1111aaaa", overwrite=False)  # same student: re-export is fine
    with pytest.raises(EdgeKDError, match="another student.*--overwrite"):
        refuse_other_run(tmp_path, "2222bbbb", overwrite=False)
    refuse_other_run(tmp_path, "2222bbbb", overwrite=True)
