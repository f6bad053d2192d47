"""Run a TensorRT engine for verify/bench: refuse mismatching devices, then execute.

Why cuda-python buffers (not torch): the runner must work on a Jetson image that has only
TensorRT + cuda-python, like the ORT/OpenVINO runners need only their runtime. The device
check (`trt_sidecar.check_compatible`) runs BEFORE deserializing, so a wrong engine fails
with the list of differences, not a TensorRT stack trace.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.export.runner import Runner, RunnerConfig
from edgekd.export.tensorrt_export import _cudart, cuda_check, device_fingerprint, import_tensorrt
from edgekd.errors import EdgeKDError
from edgekd.export.trt_sidecar import EngineSidecar, check_compatible, read_sidecar, rebuild_hint


def check_engine_bytes(blob: bytes, sc: EngineSidecar, path: Path) -> None:
    """The engine must be the one the sidecar describes (a copied-over engine with an old
    sidecar would pass the device check and then run with the wrong profile/metadata)."""
    digest = hashlib.sha256(blob).hexdigest()
    if not sc.engine_sha256 or digest != sc.engine_sha256:
        raise EdgeKDError(f"{path.name}: sha256 {digest[:12]}... does not match its sidecar "
                          f"({sc.engine_sha256[:12] or 'none recorded'}...); the engine and {path.with_suffix('.json').name} "
                          f"come from different builds. {rebuild_hint(sc)}")


class TensorRTRunner(Runner):
    runtime = "tensorrt"

    def __init__(self, path: str | Path, cfg: RunnerConfig | None = None):
        super().__init__(path, cfg or RunnerConfig())
        sc = read_sidecar(self.path)
        for w in check_compatible(sc, device_fingerprint(), self.path):
            warnings.warn(f"{self.path.name}: {w}", stacklevel=2)
        blob = self.path.read_bytes()
        check_engine_bytes(blob, sc, self.path)
        trt = import_tensorrt()
        self.cudart = _cudart()
        t0 = time.perf_counter()
        self.trt_runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.trt_runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise EdgeKDError(f"TensorRT {trt.__version__} could not deserialize {self.path} (see its log above): the file "
                              f"is damaged or from another TensorRT build; {rebuild_hint(sc)}")
        self.context = self.engine.create_execution_context()
        self.load_seconds = time.perf_counter() - t0
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.profile = sc.profile
        self.max_batch = int(sc.profile.max[0])
        self.input_shape = tuple(sc.profile.opt)
        self.stream = cuda_check(self.cudart.cudaStreamCreate())
        num_classes = int(self.engine.get_tensor_shape(self.output_name)[-1])
        self._d_in = cuda_check(self.cudart.cudaMalloc(int(np.prod(sc.profile.max)) * 4))
        self._d_out = cuda_check(self.cudart.cudaMalloc(self.max_batch * num_classes * 4))
        self.context.set_tensor_address(self.input_name, int(self._d_in))
        self.context.set_tensor_address(self.output_name, int(self._d_out))

    def _run(self, x: np.ndarray) -> np.ndarray:
        c = self.cudart
        if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
            raise EdgeKDError(f"{self.path.name}: input shape {tuple(x.shape)} is outside the engine's profile "
                              f"(min {self.profile.min}, max {self.profile.max}); rebuild with --min-batch/--max-batch")
        out = np.empty(tuple(self.context.get_tensor_shape(self.output_name)), np.float32)
        cuda_check(c.cudaMemcpyAsync(self._d_in, x.ctypes.data, x.nbytes, c.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        cuda_check(c.cudaMemcpyAsync(out.ctypes.data, self._d_out, out.nbytes, c.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        cuda_check(c.cudaStreamSynchronize(self.stream))
        return out

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return np.concatenate([self._run(x[i : i + self.max_batch]) for i in range(0, len(x), self.max_batch)])

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["device"] = device_fingerprint().to_dict()
        return d

    def __del__(self) -> None:
        try:
            for p in (self._d_in, self._d_out):
                self.cudart.cudaFree(p)
            self.cudart.cudaStreamDestroy(self.stream)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
