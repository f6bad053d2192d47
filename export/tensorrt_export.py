"""ONNX -> TensorRT engine with the TensorRT Python API (FP32 / FP16 / INT8 from Q/DQ).

Why explicit quantization: INT8 comes from the symmetric Q/DQ ONNX written by `ort_quant`
(the implicit-calibrator API is deprecated); TensorRT fuses the Q/DQ pairs into INT8
kernels and needs no calibration data on the device. One optimization profile (min/opt/max
batch) serves batch-1 latency and batched throughput. The timing cache makes rebuilds on
the same device fast. `tensorrt` is imported lazily: it is absent on CPU machines (its
wheels fetch the libraries from NVIDIA at install time), and the error names the install step.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import EdgeKDError
from edgekd.export.artifacts import sha256_file
from edgekd.export.trt_sidecar import DeviceFingerprint, EngineSidecar, profile_shapes, write_sidecar

INSTALL_HINT = (
    "install TensorRT on the GPU machine: `pip install 'edgekd[tensorrt]'` (tensorrt + cuda-python; the "
    "wheels download NVIDIA's libraries at install time), or on Jetson use JetPack's python3-libnvinfer "
    "(docker/Dockerfile.jetson)"
)


@dataclass
class TrtBuildConfig:
    precision: str = "fp16"  # fp32 | fp16 | int8 (int8 expects a Q/DQ ONNX)
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 32
    workspace_mb: int = 1024
    optimization_level: int = 3  # TensorRT builder optimization level 0-5
    timing_cache: Path | None = None  # default: timing.cache beside the engine
    fp16_fallback_for_int8: bool = True  # float layers of a Q/DQ model run in fp16


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as e:
        raise EdgeKDError(f"the TensorRT Python package is not importable ({e}); {INSTALL_HINT}") from None
    return trt


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
        except ImportError:
            raise EdgeKDError("cuda-python is not importable; pip install 'edgekd[tensorrt]'") from None
    return cudart


def cuda_check(result: Any) -> Any:
    """cuda-python returns (err, *values); raise on err != 0, return the values."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else tuple(rest)


def tensorrt_unavailable_reason() -> str | None:
    """None when engines can be built here, else why not (no GPU / no TensorRT)."""
    if shutil.which("nvidia-smi") is None and not Path("/etc/nv_tegra_release").exists():
        return "no NVIDIA GPU on this machine (no nvidia-smi, not a Jetson)"
    try:
        import_tensorrt()
    except EdgeKDError as e:
        return str(e)
    try:
        cudart = _cudart()
        if cuda_check(cudart.cudaGetDeviceCount()) < 1:
            return "CUDA reports no GPU"
    except (EdgeKDError, RuntimeError) as e:
        return f"CUDA not usable: {e}"
    return None


def device_fingerprint(device: int = 0) -> DeviceFingerprint:
    """What this GPU + software stack is (needs tensorrt and cuda-python)."""
    trt = import_tensorrt()
    cudart = _cudart()
    props = cuda_check(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    rt = cuda_check(cudart.cudaRuntimeGetVersion())
    drv = cuda_check(cudart.cudaDriverGetVersion())
    v = lambda n: f"{n // 1000}.{(n % 1000) // 10}"  # noqa: E731  12060 -> 12.6
    return DeviceFingerprint(gpu_name=name.strip("\x00 "), compute_capability=f"{props.major}.{props.minor}",
                             tensorrt_version=trt.__version__, cuda_version=v(rt), driver_version=v(drv))


def build_engine(onnx_path: Path, engine_path: Path, cfg: TrtBuildConfig, metadata: dict | None = None) -> EngineSidecar:
    """Parse the ONNX, build, serialize a plain `.engine` + sidecar JSON; returns the sidecar."""
    trt = import_tensorrt()
    from edgekd.export.metadata import read_metadata

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeKDError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    inp = network.get_input(0)
    chw = tuple(inp.shape)[1:]
    prof = profile_shapes(inp.name, chw, cfg.min_batch, cfg.opt_batch, cfg.max_batch)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = cfg.optimization_level
    if cfg.precision == "fp16" or (cfg.precision == "int8" and cfg.fp16_fallback_for_int8):
        config.set_flag(trt.BuilderFlag.FP16)
    if cfg.precision == "int8":
        q = sum(1 for i in range(network.num_layers) if network.get_layer(i).type == trt.LayerType.QUANTIZE)
        if q == 0:
            raise EdgeKDError(f"{onnx_path} has no QuantizeLinear nodes: INT8 needs the Q/DQ ONNX (model.int8.qdq.onnx)")
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from Q/DQ, no calibrator
    profile = builder.create_optimization_profile()
    profile.set_shape(prof.input_name, prof.min, prof.opt, prof.max)
    config.add_optimization_profile(profile)
    cache_path = Path(cfg.timing_cache or engine_path.parent / "timing.cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeKDError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    md = dict(metadata if metadata is not None else read_metadata(onnx_path))
    md["precision"] = cfg.precision
    sc = EngineSidecar(
        engine_file=engine_path.name, precision=cfg.precision, device=device_fingerprint(), profile=prof,
        source_onnx=str(onnx_path), source_onnx_sha256=sha256_file(onnx_path), engine_sha256=sha256_file(engine_path),
        builder={**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                 "timing_cache": str(cache_path), "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat()},
        metadata=md,
    )
    write_sidecar(sc, engine_path)
    return sc
