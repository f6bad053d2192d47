"""ONNX -> TensorRT engine with the TensorRT Python API, for TensorRT 10.x and 11.

Network typing (NVIDIA's TensorRT 11 migration guide): TensorRT 11 removes weak typing
(BuilderFlag.FP16/INT8/BF16, precision constraints, calibrators); networks are strongly typed:
every tensor has the type the ONNX gives it. So precision lives in the ONNX we ship: FP16 =
`model.fp16.onnx` (FP16 weights/compute, FP32 inputs/outputs), INT8 = the symmetric Q/DQ
ONNX from `ort_quant` (explicit quantization, no calibration on the device). From TensorRT
10.12 we build strongly typed too (STRONGLY_TYPED flag; the flag is ignored in 11). Older
10.x (JetPack 6 ships 10.3) falls back to weak typing with the FP16/INT8 builder flags.
One optimization profile (min/opt/max batch) serves batch-1 latency and batched throughput.
The timing cache makes rebuilds fast; a cache from another TensorRT/device is set aside, not
fatal. `tensorrt` is imported lazily: it is absent on CPU machines (its wheels fetch the
libraries from NVIDIA at install time), and the error names the install step.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import EdgeKDError
from edgekd.export.artifacts import sha256_file
from edgekd.export.trt_sidecar import (
    DeviceFingerprint, EngineSidecar, jetson_model, nvidia_driver_version, profile_shapes, write_sidecar,
)

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
    fp16_fallback_for_int8: bool = True  # weakly typed (TensorRT < 10.12) only: float layers of a Q/DQ model in fp16


#: first TensorRT with the strongly typed network path we rely on (issue: FP16/INT8 flags gone in 11)
STRONGLY_TYPED_FROM = (10, 12)


def trt_version(trt: Any) -> tuple[int, int]:
    major, minor = (int(x) for x in str(trt.__version__).split(".")[:2])
    return major, minor


def network_typing(trt: Any) -> tuple[int, bool]:
    """(create_network flags, strongly typed?) for the installed TensorRT."""
    v = trt_version(trt)
    if v[0] < 10:
        raise EdgeKDError(f"TensorRT {trt.__version__} is too old: edgekd needs TensorRT >= 10 (pip install 'edgekd[tensorrt]')")
    if v >= (11, 0):
        return 0, True  # always strongly typed; the flag is deprecated and ignored
    if v >= STRONGLY_TYPED_FROM:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED), True
    return 0, False  # JetPack's 10.3: weak typing with builder precision flags


def precision_flags(trt: Any, precision: str, strongly_typed: bool, fp16_fallback: bool = True) -> list[Any]:
    """Builder precision flags: none when strongly typed (the ONNX carries the types)."""
    if strongly_typed or precision == "fp32":
        return []
    flags = [trt.BuilderFlag.FP16] if precision == "fp16" or fp16_fallback else []
    return flags + ([trt.BuilderFlag.INT8] if precision == "int8" else [])


def check_network_precision(trt: Any, network: Any, precision: str, onnx_path: Path, strongly_typed: bool) -> None:
    """Refuse an ONNX that cannot give `precision` (a strongly typed fp32 ONNX builds fp32, silently)."""
    types = [network.get_layer(i).type for i in range(network.num_layers)]
    if precision == "int8" and trt.LayerType.QUANTIZE not in types:
        raise EdgeKDError(f"{onnx_path} has no QuantizeLinear nodes: INT8 needs the Q/DQ ONNX (model.int8.qdq.onnx)")
    if precision == "fp16" and strongly_typed:
        half = any(network.get_layer(i).get_output(0).dtype == trt.DataType.HALF for i in range(network.num_layers))
        if not half:
            raise EdgeKDError(f"{onnx_path} is an FP32 ONNX: TensorRT >= 10.12 builds strongly typed networks, so it would "
                              "run in FP32. Build from the shipped model.fp16.onnx (written by `edgekd export --target tensorrt`)")


def load_timing_cache(config: Any, path: Path) -> tuple[Any, str]:
    """The timing cache from `path` (or a fresh one) set on `config`, + a note when an old one
    (other TensorRT version or device) had to be set aside: a stale cache must not stop a build."""
    blob = path.read_bytes() if path.exists() else b""
    cache = config.create_timing_cache(blob) if blob else None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache, ""
    note = ""
    if blob:
        path.replace(path.with_suffix(path.suffix + ".stale"))
        note = f"timing cache {path.name} was built by another TensorRT/device; moved to {path.name}.stale, starting a new one"
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise EdgeKDError("TensorRT could not create an empty timing cache (see the TensorRT log above)")
    return cache, note


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
    v = lambda n: f"{n // 1000}.{(n % 1000) // 10}"  # noqa: E731  12060 -> 12.6
    return DeviceFingerprint(gpu_name=jetson_model() or name.strip("\x00 "), compute_capability=f"{props.major}.{props.minor}",
                             tensorrt_version=trt.__version__, cuda_version=v(rt), driver_version=nvidia_driver_version())


def build_engine(onnx_path: Path, engine_path: Path, cfg: TrtBuildConfig, metadata: dict | None = None) -> EngineSidecar:
    """Parse the ONNX, build, serialize a plain `.engine` + sidecar JSON; returns the sidecar."""
    trt = import_tensorrt()
    from edgekd.export.metadata import read_metadata

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net_flags, strongly_typed = network_typing(trt)
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeKDError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    check_network_precision(trt, network, cfg.precision, onnx_path, strongly_typed)
    inp = network.get_input(0)
    prof = profile_shapes(inp.name, tuple(inp.shape)[1:], cfg.min_batch, cfg.opt_batch, cfg.max_batch)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    config.builder_optimization_level = cfg.optimization_level
    for flag in precision_flags(trt, cfg.precision, strongly_typed, cfg.fp16_fallback_for_int8):
        config.set_flag(flag)
    profile = builder.create_optimization_profile()
    profile.set_shape(prof.input_name, prof.min, prof.opt, prof.max)
    config.add_optimization_profile(profile)
    cache_path = Path(cfg.timing_cache or engine_path.parent / "timing.cache")
    _, cache_note = load_timing_cache(config, cache_path)
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
                 "network": "strongly typed" if strongly_typed else "weakly typed (builder precision flags)",
                 "timing_cache": str(cache_path), "timing_cache_note": cache_note,
                 "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat()},
        metadata=md,
    )
    write_sidecar(sc, engine_path)
    return sc


def engine_name(onnx_path: Path, precision: str) -> str:
    """model.int8.qdq.onnx -> model.int8.engine; model.fp16.onnx -> model.fp16.engine; model.onnx -> model.fp32.engine."""
    stem = onnx_path.name.removesuffix(".onnx")
    for tag in (".qdq", ".int8", ".fp16", ".fp32"):
        stem = stem.replace(tag, "")
    return f"{stem}.{precision}.engine"


def write_fp16_onnx(src: Path, dst: Path) -> Path:
    """FP16 weights and compute, FP32 inputs/outputs: what a strongly typed FP16 engine is built
    from (onnxruntime's float16 converter; ops without fp16 support stay fp32 behind casts)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    from edgekd.export import metadata as md_mod

    md_mod.set_onnx_metadata(model, {**md_mod.read_metadata(src), "precision": "fp16"})
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst
