"""Time an artifact the way a clinic box would run it: torch-free, batch-1 percentiles.

Why separate numbers: load/compile time happens once per process and would swamp
per-image latency; p50/p90/p99 after warm-up is what a user waits for; throughput at a
larger batch is what a batch job gets. The machine record (CPU model, ISA flags that decide
which INT8/BF16 kernels run, threads, runtime versions) makes numbers comparable across
boxes. MUST NOT import torch or timm (tested with torch made unimportable).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekd.export.runner import ARTIFACT_PRECISION, RunnerConfig

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
#: either runs BF16 dot products in hardware; without them OpenVINO still accepts a bf16 hint on
#: AVX-512 but emulates it with conversions (slower than f32, and less exact)
BF16_ISA = ("avx512_bf16", "amx_bf16")


@dataclass
class BenchConfig:
    warmup: int = 10
    iters: int = 100
    min_seconds: float = 0.0  # keep timing until both iters and min_seconds are reached
    max_seconds: float = 30.0  # stop early on slow boxes (records how many iterations ran)
    throughput_batch: int = 32  # 0 = skip the throughput run
    throughput_seconds: float = 6.0  # like benchmark_app -t: enough iterations to fill every request


@dataclass
class BenchResult:
    name: str
    runtime: str
    precision: str
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    iters: int
    load_seconds: float
    throughput_batch: int = 0
    throughput_ips: float = 0.0  # images / s (measure_throughput)
    throughput: dict = field(default_factory=dict)
    size_mb: float = 0.0
    threads: int | None = None
    runs: str | None = None  # the float precision the runtime resolved (Runner.compute_precision)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_calls(fn: Callable[[], Any], cfg: BenchConfig) -> np.ndarray:
    """Latencies (ms) of `fn` after `cfg.warmup` untimed calls."""
    for _ in range(cfg.warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if (len(times) >= cfg.iters and elapsed >= cfg.min_seconds) or elapsed >= cfg.max_seconds:
            break
    return np.asarray(times)


def bench_runner(runner: Any, input_shape: tuple[int, int, int], name: str = "", precision: str = "",
                 cfg: BenchConfig | None = None, size_mb: float = 0.0, sample: np.ndarray | None = None) -> BenchResult:
    """Batch-1 latency of `runner` (throughput is `measure_throughput`: another compile).

    `sample`: a real preprocessed image to time (data-dependent kernels are rare, but the
    clinic number should come from a clinic image when one is given); else random normal.
    """
    cfg = cfg or BenchConfig()
    rng = np.random.default_rng(0)
    x1 = sample[None].astype(np.float32) if sample is not None else rng.standard_normal((1, *input_shape), dtype=np.float32)
    t = time_calls(lambda: runner.predict(x1), cfg)
    info = runner.info() if hasattr(runner, "info") else {}
    return BenchResult(
        name=name or Path(str(getattr(runner, "path", "?"))).name, runtime=getattr(runner, "runtime", "?"),
        precision=precision, batch=1, p50_ms=float(np.percentile(t, 50)), p90_ms=float(np.percentile(t, 90)),
        p99_ms=float(np.percentile(t, 99)), mean_ms=float(t.mean()), iters=len(t),
        load_seconds=float(getattr(runner, "load_seconds", 0.0)), size_mb=size_mb,
        threads=info.get("num_threads", getattr(getattr(runner, "cfg", None), "threads", None)),
        runs=getattr(runner, "compute_precision", None), details=info,
    )


def time_artifact(path: Path, cfg: BenchConfig, rcfg: RunnerConfig, sample: np.ndarray | None = None) -> BenchResult:
    """`bench_runner` on an exported artifact: its precision and input size from its metadata,
    its size from all its files."""
    from edgekd.export.artifacts import artifact_files
    from edgekd.export.metadata import read_metadata
    from edgekd.export.runtimes import open_runner

    md = read_metadata(path)
    runner = open_runner(path, rcfg)
    chw = tuple(md.get("input_size") or runner.input_shape[1:])
    size = sum(f.stat().st_size for f in artifact_files(path)) / 1e6
    return bench_runner(runner, chw, path.name, str(md.get("precision", "?")), cfg, size_mb=size, sample=sample)


@dataclass
class Throughput:
    batch: int
    ips: float  # images / s
    requests: int  # in flight at once (OpenVINO: OPTIMAL_NUMBER_OF_INFER_REQUESTS for the THROUGHPUT hint)
    streams: int
    iterations: int
    seconds: float


def measure_throughput(path: str | Path, batch: int, threads: int | None = 2,
                       inference_precision: str | None = ARTIFACT_PRECISION, seconds: float = 6.0) -> Throughput:
    """Images/s the way OpenVINO's benchmark_app measures it: a model compiled for a static
    batch, the THROUGHPUT hint's streams each fed by its own infer request (async queue), run
    for `seconds`. A synchronous loop over a dynamic-batch model keeps one stream busy and
    under-reported OpenVINO INT8 badly; this way it agrees with benchmark_app on the same IR
    (benchmarks/results/bench_vs_benchmark_app.md). ONNX Runtime and TensorRT runners have no
    streams here: static batch, sequential calls."""
    if Path(path).suffix == ".xml":
        return _openvino_throughput(Path(path), batch, threads, inference_precision, seconds)
    from edgekd.export.runtimes import open_runner

    r = open_runner(path, RunnerConfig(threads=threads, static_batch=batch, latency=False, inference_precision=inference_precision))
    x_shape = (batch, *r.input_shape[1:])
    x = np.random.default_rng(0).standard_normal(x_shape, dtype=np.float32)
    r.predict(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        r.predict(x)
        n += 1
    el = time.perf_counter() - t0
    return Throughput(batch, n * batch / el, 1, 1, n, el)


def _openvino_throughput(path: Path, batch: int, threads: int | None, precision: str | None, seconds: float) -> Throughput:
    import openvino as ov

    from edgekd.export.runtimes import openvino_hint

    core = ov.Core()
    model = core.read_model(str(path))
    inp = model.inputs[0]
    shape = list(inp.get_partial_shape().get_min_shape())
    shape[0] = batch
    model.reshape({inp.get_any_name(): shape})
    config: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    hint = openvino_hint(model, precision)
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    compiled = core.compile_model(model, "CPU", config)
    nreq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, nreq)
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    for _ in range(nreq):  # warm-up: every request once
        queue.start_async({0: x})
    queue.wait_all()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2 * nreq:
        queue.start_async({0: x})  # blocks while every request is busy
        n += 1
    queue.wait_all()
    el = time.perf_counter() - t0
    return Throughput(batch, n * batch / el, nreq, int(compiled.get_property("NUM_STREAMS")), n, el)


def cpu_info() -> dict[str, Any]:
    """CPU model, ISA flags relevant to INT8/BF16 kernels, logical cores (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = m.group(1).strip() if m else model
        f = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        flags = set(f.group(1).split()) if f else set()
    except OSError:
        pass
    return {
        "cpu_model": model,
        "isa": {k: (k in flags) for k in ISA_FLAGS},
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def runs_bf16(isa: dict[str, bool]) -> bool:
    """Whether a CPU with these ISA flags (`cpu_info()["isa"]`) computes BF16 in hardware: the one
    place that decides whether a BF16 candidate is worth building and timing here."""
    return any(isa.get(flag, False) for flag in BF16_ISA)


def gpu_info() -> dict[str, Any] | None:
    """GPU name/driver via nvidia-smi (no CUDA import); on Jetson (no full nvidia-smi) the module
    from the device tree and the L4T release. None without an NVIDIA GPU."""
    from edgekd.export.trt_sidecar import jetson_model, nvidia_driver_version

    jetson = jetson_model()
    if jetson:
        return {"gpu_name": jetson, "driver": nvidia_driver_version(), "compute_capability": "", "jetson": True}
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, driver, cc = [s.strip() for s in (out[0].split(",") + ["", ""])[:3]]
    return {"gpu_name": name, "driver": driver, "compute_capability": cc}


def machine_info() -> dict[str, Any]:
    from edgekd.export.runner import runtime_version

    info = {
        **cpu_info(), "gpu": gpu_info(), "os": platform.platform(), "python": platform.python_version(),
        "runtimes": {r: runtime_version(r) for r in ("onnxruntime", "openvino", "tensorrt")},
    }
    return info
