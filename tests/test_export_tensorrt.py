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


# ---- TensorRT 10.x / 11 API handling, against a stand-in module with TensorRT's enum names ----
# (these check OUR decisions: which flags, which errors; nothing here builds or runs an engine)

class _Flag:
    def __init__(self, name):
        self.name = name

    def __int__(self):
        return {"STRONGLY_TYPED": 0}[self.name]

    def __repr__(self):
        return self.name


def _fake_trt(version: str, with_weak_flags: bool = True):
    import types

    trt = types.SimpleNamespace(__version__=version)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=_Flag("STRONGLY_TYPED"))
    trt.BuilderFlag = types.SimpleNamespace(**({"FP16": "FP16", "INT8": "INT8"} if with_weak_flags else {}))
    trt.LayerType = types.SimpleNamespace(QUANTIZE="QUANTIZE", CONVOLUTION="CONVOLUTION")
    trt.DataType = types.SimpleNamespace(HALF="HALF", FLOAT="FLOAT")
    return trt


@pytest.mark.parametrize("version,flags,strong", [("10.3.0", 0, False), ("10.11.0", 0, False), ("10.12.0", 1, True),
                                                   ("10.16.1", 1, True), ("11.0.0", 0, True), ("11.4.2", 0, True)])
def test_network_typing_by_tensorrt_version(version, flags, strong):
    from edgekd.export.tensorrt_export import network_typing, precision_flags

    trt = _fake_trt(version, with_weak_flags=version.startswith("10."))
    assert network_typing(trt) == (flags, strong)
    for precision in ("fp32", "fp16", "int8"):  # TensorRT 11 has no FP16/INT8 flags: never touched
        got = precision_flags(trt, precision, strong)
        assert got == ([] if strong or precision == "fp32" else (["FP16"] if precision == "fp16" else ["FP16", "INT8"]))


def test_tensorrt_9_is_refused():
    from edgekd.export.tensorrt_export import network_typing

    with pytest.raises(EdgeKDError, match="TensorRT >= 10"):
        network_typing(_fake_trt("8.6.1"))


class _Net:
    def __init__(self, layers):
        self.layers = layers  # (type, output dtype)
        self.num_layers = len(layers)

    def get_layer(self, i):
        import types

        t, dt = self.layers[i]
        return types.SimpleNamespace(type=t, get_output=lambda _: types.SimpleNamespace(dtype=dt))


def test_network_precision_checks():
    from edgekd.export.tensorrt_export import check_network_precision

    trt = _fake_trt("10.12.0")
    fp32 = _Net([("CONVOLUTION", "FLOAT")])
    with pytest.raises(EdgeKDError, match="model.fp16.onnx"):
        check_network_precision(trt, fp32, "fp16", Path("model.onnx"), strongly_typed=True)
    check_network_precision(trt, fp32, "fp16", Path("model.onnx"), strongly_typed=False)  # 10.3: the FP16 flag does it
    check_network_precision(trt, _Net([("CONVOLUTION", "HALF")]), "fp16", Path("model.fp16.onnx"), strongly_typed=True)
    with pytest.raises(EdgeKDError, match="no QuantizeLinear"):
        check_network_precision(trt, fp32, "int8", Path("model.onnx"), strongly_typed=True)
    check_network_precision(trt, _Net([("QUANTIZE", "FLOAT")]), "int8", Path("model.int8.qdq.onnx"), strongly_typed=True)


class _Config:
    """Builder config stand-in: a cache blob written by 'another TensorRT' is rejected."""

    def __init__(self):
        self.caches = []

    def create_timing_cache(self, blob):
        return None if blob == b"corrupt" else ("cache", blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False
        self.caches.append(cache)
        return cache[1] in (b"", b"good")


@pytest.mark.parametrize("blob", [b"other-version", b"corrupt"])
def test_timing_cache_mismatch_is_set_aside(tmp_path, blob):
    from edgekd.export.tensorrt_export import load_timing_cache

    path = tmp_path / "timing.cache"
    path.write_bytes(blob)
    cache, note = load_timing_cache(_Config(), path)
    assert cache == ("cache", b"") and "another TensorRT/device" in note
    assert not path.exists() and (tmp_path / "timing.cache.stale").read_bytes() == blob
    path.write_bytes(b"good")
    assert load_timing_cache(_Config(), path) == (("cache", b"good"), "")
    path.unlink()
    assert load_timing_cache(_Config(), path) == (("cache", b""), "")  # first build: no note


def _runner_env(monkeypatch, engine_obj=None):
    import types

    from edgekd.export import tensorrt_runtime

    monkeypatch.setattr(tensorrt_runtime, "device_fingerprint", lambda: ORIN)
    trt = _fake_trt("10.3.0")
    trt.Logger = lambda *_: None
    trt.Logger.WARNING = 0
    trt.Runtime = lambda _logger: types.SimpleNamespace(deserialize_cuda_engine=lambda blob: engine_obj)
    monkeypatch.setattr(tensorrt_runtime, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(tensorrt_runtime, "_cudart", lambda: types.SimpleNamespace())
    return tensorrt_runtime


def test_engine_sha256_must_match_the_sidecar(tmp_path, monkeypatch):
    rt = _runner_env(monkeypatch)
    engine, sc = _sidecar(tmp_path)
    with pytest.raises(EdgeKDError, match="does not match its sidecar"):  # sidecar has no/old digest
        rt.TensorRTRunner(engine)


def test_deserialize_none_is_a_clear_error(tmp_path, monkeypatch):
    from edgekd.export.artifacts import sha256_file

    rt = _runner_env(monkeypatch, engine_obj=None)
    engine, sc = _sidecar(tmp_path)
    sc.engine_sha256 = sha256_file(engine)
    write_sidecar(sc, engine)
    with pytest.raises(EdgeKDError, match="could not deserialize .*--build-on-device --onnx model.int8.qdq.onnx"):
        rt.TensorRTRunner(engine)


def test_set_input_shape_failure_is_an_error(tmp_path):
    import types

    from edgekd.export.tensorrt_runtime import TensorRTRunner

    r = object.__new__(TensorRTRunner)
    r.path, r.input_name, r.cudart = tmp_path / "m.engine", "input", None
    r.profile = profile_shapes("input", (3, 32, 32), 1, 1, 8)
    r.context = types.SimpleNamespace(set_input_shape=lambda name, shape: False)
    with pytest.raises(EdgeKDError, match="outside the engine's profile"):
        r._run(np.zeros((9, 3, 32, 32), np.float32))


def test_device_identity_jetson_and_driver(tmp_path):
    from edgekd.export.trt_sidecar import jetson_model, nvidia_driver_version

    assert jetson_model(tmp_path) is None and nvidia_driver_version(tmp_path) == "unknown"
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit\x00")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic\n")
    assert jetson_model(tmp_path) == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit"
    assert nvidia_driver_version(tmp_path) == "L4T R36.4.3"
    (tmp_path / "proc" / "driver" / "nvidia").mkdir(parents=True)
    (tmp_path / "proc" / "driver" / "nvidia" / "version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.10  Release Build  (dvs-builder@U16)\n")
    assert nvidia_driver_version(tmp_path) == "570.86.10"


def test_engine_names():
    from edgekd.export.tensorrt_export import engine_name

    assert engine_name(Path("model.int8.qdq.onnx"), "int8") == "model.int8.engine"
    assert engine_name(Path("x/model.fp16.onnx"), "fp16") == "model.fp16.engine"
    assert engine_name(Path("model.onnx"), "fp32") == "model.fp32.engine"


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
    from tests.export_fixtures import cached_export_all
    from edgekd.export.tensorrt_export import TrtBuildConfig, build_engine
    from edgekd.export.tensorrt_runtime import TensorRTRunner

    from edgekd.data import Manifest
    from edgekd.export.batches import load_batch
    from edgekd.export.metadata import preprocess_dict, read_metadata
    from edgekd.export.runtimes import open_runner

    run, out, _ = cached_export_all(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "convnext")
    src = out / "tensorrt" / ("model.fp16.onnx" if precision == "fp16" else "model.int8.qdq.onnx")
    engine = tmp_path_factory.mktemp("trt") / f"model.{precision}.engine"
    sc = build_engine(src, engine, TrtBuildConfig(precision=precision, max_batch=8))
    assert engine.exists() and sc.device.gpu_name and sc.engine_sha256
    r = TensorRTRunner(engine)
    items = Manifest.load(run / "data" / "test.json").items[:11]
    x = load_batch([p for p, _ in items], preprocess_dict(read_metadata(src)))  # 11 > max batch 8: chunked
    got, ref = r.predict(x), open_runner(out / "onnx" / "model.onnx").predict(x)
    assert got.shape == ref.shape == (11, 4)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 10 / 11  # same predictions as ONNX Runtime FP32
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.98
