"""TensorRT: everything of ours that runs without a GPU (sidecar, fingerprint refusal, profile,
lazy import error, the Q/DQ ONNX it consumes), plus engine build/run tests that skip here."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest

from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.export.trt_sidecar import (
    DeviceFingerprint, EngineSidecar, check_compatible, compare_fingerprints, profile_shapes, read_sidecar, write_sidecar,
)

ORIN = DeviceFingerprint("Orin", "8.7", "10.3.0", "12.6", "540.4")
RTX = DeviceFingerprint("NVIDIA GeForce RTX 4090", "8.9", "10.7.0", "12.8", "570.86")


def _sidecar(tmp_path: Path, device=ORIN) -> tuple[Path, EngineSidecar]:
    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"not a real engine")
    sc = EngineSidecar(engine_file=engine.name, precision="int8", device=device,
                       profile=profile_shapes("input", (3, 224, 224), 1, 1, 16), source_onnx="model.int8.qdq.onnx",
                       source_onnx_sha256="0" * 64, metadata={"classes": ["a", "b"], "precision": "int8"})
    write_sidecar(sc, engine)
    return engine, sc


def test_profile_shapes():
    p = profile_shapes("input", [3, 224, 224], 1, 4, 32)
    assert p.min == (1, 3, 224, 224) and p.opt == (4, 3, 224, 224) and p.max == (32, 3, 224, 224)
    with pytest.raises(EdgeKDError, match="min <= opt <= max"):
        profile_shapes("input", (3, 224, 224), 8, 4, 32)


def test_sidecar_round_trip(tmp_path):
    engine, sc = _sidecar(tmp_path)
    d = json.loads(engine.with_suffix(".json").read_text())
    assert d["device"]["compute_capability"] == "8.7" and d["profile"]["max"] == [16, 3, 224, 224]
    back = read_sidecar(engine)
    assert back.device == ORIN and back.profile == sc.profile and back.metadata["classes"] == ["a", "b"]


def test_missing_or_foreign_sidecar_is_an_error(tmp_path):
    with pytest.raises(EdgeKDError, match="sidecar written at build time"):
        read_sidecar(tmp_path / "x.engine")
    (tmp_path / "y.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(EdgeKDError, match="unknown sidecar schema"):
        read_sidecar(tmp_path / "y.engine")


def test_fingerprint_comparison_spells_out_the_difference(tmp_path):
    engine, sc = _sidecar(tmp_path)
    blocking, warn = compare_fingerprints(ORIN, RTX)
    assert any("compute_capability: engine built with '8.7', this device has '8.9'" in b for b in blocking)
    assert any(b.startswith("tensorrt_version") for b in blocking) and any(w.startswith("driver_version") for w in warn)
    with pytest.raises(EdgeKDError) as e:
        check_compatible(sc, RTX, engine)
    msg = str(e.value)
    assert "refusing to load model.int8.engine" in msg and "10.3.0" in msg and "10.7.0" in msg
    assert "--build-on-device --onnx model.int8.qdq.onnx --precision int8" in msg
    # same GPU + TensorRT, newer driver: loads, with a warning
    newer_driver = DeviceFingerprint(ORIN.gpu_name, ORIN.compute_capability, ORIN.tensorrt_version, "12.6", "560.1")
    assert check_compatible(sc, newer_driver) == ["driver_version: engine built with '540.4', this device has '560.1'"]


def test_lazy_import_error_names_the_install_step(monkeypatch):
    from edgekd.export import tensorrt_export as trtx

    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(EdgeKDError, match=r"pip install 'edgekd\[tensorrt\]'"):
        trtx.import_tensorrt()


def test_unavailable_reason_on_this_machine():
    from edgekd.export.tensorrt_export import tensorrt_unavailable_reason

    try:
        import tensorrt  # noqa: F401
        has_trt = True
    except ImportError:
        has_trt = False
    reason = tensorrt_unavailable_reason()
    if not has_trt:
        assert reason and ("GPU" in reason or "TensorRT" in reason)


def test_build_on_device_without_gpu_is_a_clear_error(tmp_path, capsys):
    from edgekd.export.tensorrt_export import tensorrt_unavailable_reason

    if tensorrt_unavailable_reason() is None:
        pytest.skip("this machine can build engines")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    assert main(["export", "--build-on-device", "--onnx", str(onnx), "--precision", "fp16"]) == 2
    assert "cannot build a TensorRT engine here" in capsys.readouterr().err
    assert main(["export", "--build-on-device", "--onnx", str(onnx), "--target", "openvino"]) == 2
    assert main(["export", "--build-on-device", "--onnx", str(onnx), "--precision", "fp16", "--min-batch", "4",
                 "--opt-batch", "2", "--max-batch", "8"]) == 2


def test_tensorrt_runner_refuses_before_deserializing(tmp_path, monkeypatch):
    """The refusal happens from the sidecar alone: no TensorRT, no GPU needed to see it."""
    from edgekd.export import tensorrt_runtime

    engine, _ = _sidecar(tmp_path)
    monkeypatch.setattr(tensorrt_runtime, "device_fingerprint", lambda: RTX)
    monkeypatch.setattr(tensorrt_runtime, "import_tensorrt", lambda: pytest.fail("must refuse before importing TensorRT"))
    with pytest.raises(EdgeKDError, match="refusing to load"):
        tensorrt_runtime.TensorRTRunner(engine)


# ---- real engines: only where TensorRT and a CUDA GPU exist (never on this project's CI) ----

def _needs_gpu():
    pytest.importorskip("tensorrt", reason="TensorRT is not installable here (its wheels fetch NVIDIA libraries at install time)")
    from edgekd.export.tensorrt_export import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason:
        pytest.skip(f"no CUDA device for TensorRT: {reason}")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_build_and_run(precision, tmp_path_factory):
    _needs_gpu()
    from edgekd.export.testing import cached_export_all
    from edgekd.export.tensorrt_export import TrtBuildConfig, build_engine
    from edgekd.export.tensorrt_runtime import TensorRTRunner

    run, out, _ = cached_export_all(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "convnext")
    src = out / "onnx" / "model.onnx" if precision == "fp16" else out / "tensorrt" / "model.int8.qdq.onnx"
    engine = tmp_path_factory.mktemp("trt") / f"model.{precision}.engine"
    sc = build_engine(src, engine, TrtBuildConfig(precision=precision, max_batch=8))
    assert engine.exists() and sc.device.gpu_name
    r = TensorRTRunner(engine)
    x = np.random.default_rng(0).standard_normal((11, 3, 32, 32), dtype=np.float32)  # > max batch: chunked
    assert r.predict(x).shape == (11, 4)
