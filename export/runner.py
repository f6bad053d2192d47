"""The interface every artifact runner has: `predict(batch) -> logits`, and how it is configured.

Its own module so the per-runtime runners (`runtimes.py`, `tensorrt_runtime.py`) build on it
without importing each other. Torch-free.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np


class Predictor(Protocol):
    """Anything verify can compare: an artifact runner, or the PyTorch reference."""

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


#: `RunnerConfig.inference_precision`: ask OpenVINO for the precision the IR is named for
#: (`runtimes.OPENVINO_HINTS`), so that verify, bench and predict run a BF16 IR in BF16
ARTIFACT_PRECISION = "artifact"


@dataclass
class RunnerConfig:
    threads: int | None = 2  # None = the runtime's default (all cores)
    static_batch: int | None = None  # compile for a fixed batch (fastest batch-1 latency)
    latency: bool = True  # OpenVINO PERFORMANCE_HINT LATENCY (else THROUGHPUT)
    # OpenVINO INFERENCE_PRECISION_HINT: f32 | bf16 | f16, ARTIFACT_PRECISION, or None = the device's default
    inference_precision: str | None = ARTIFACT_PRECISION
    ort_opt_level: str = "all"  # disable | basic | extended | all


class Runner:
    """Base: subclasses implement `_run` on exactly the compiled batch (or any, if dynamic)."""

    runtime = "?"

    def __init__(self, path: str | Path, cfg: RunnerConfig):
        self.path, self.cfg = Path(path), cfg
        self.load_seconds = 0.0
        self.fixed_batch: int | None = None
        self.input_shape: tuple[int, ...] = ()
        # the float precision the runtime resolved for this artifact where it can say (OpenVINO's hint:
        # an FP16 IR runs f32 on a CPU without FP16 arithmetic); None = what the file holds
        self.compute_precision: str | None = None

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        b = self.fixed_batch
        if not b or len(x) == b:
            return self._run(x)
        outs = []
        for i in range(0, len(x), b):
            chunk = x[i : i + b]
            n = len(chunk)
            if n < b:  # pad the last partial batch; padded rows are not returned
                chunk = np.concatenate([chunk, np.zeros((b - n, *chunk.shape[1:]), np.float32)])
            outs.append(self._run(chunk)[:n])
        return np.concatenate(outs)

    def info(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "path": str(self.path), "load_seconds": round(self.load_seconds, 4),
                "fixed_batch": self.fixed_batch, "config": asdict(self.cfg), "version": runtime_version(self.runtime)}


def runtime_version(runtime: str) -> str:
    try:
        if runtime == "onnxruntime":
            import onnxruntime

            return onnxruntime.__version__
        if runtime == "openvino":
            import openvino

            return openvino.get_version()
        if runtime == "tensorrt":
            import tensorrt  # type: ignore[import-not-found]

            return tensorrt.__version__
    except ImportError:
        return "not installed"
    return ""


@contextmanager
def readable_artifact(path: str | Path) -> Iterator[None]:
    """Turn a runtime's failure to read a file (garbage, empty, truncated, a .bin missing) into one
    line naming the file and the fix, instead of a 20-line traceback from inside the runtime."""
    from edgekd.errors import EdgeKDError

    try:
        yield
    except (EdgeKDError, ImportError):  # already one line; a missing runtime is the CLI's "pip install" message
        raise
    except Exception as e:  # noqa: BLE001 - the runtime's own error types differ per runtime and version
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise EdgeKDError(f"{path} is not a readable artifact ({type(e).__name__}: {first}); fix: pass the "
                          ".onnx / .xml (with its .bin) / .engine that `edgekd export` wrote, or re-export it") from None


def check_artifact_path(path: str | Path) -> None:
    """An existing .onnx / .xml / .engine, or one line saying what was given instead."""
    from edgekd.errors import EdgeKDError

    path = Path(path)
    if path.suffix not in (".onnx", ".xml", ".engine"):
        raise EdgeKDError(f"{path} is not an artifact ({path.suffix or 'no suffix'}); fix: pass an .onnx, .xml or "
                          ".engine written by `edgekd export` (a .safetensors student goes to --run)")
    if not path.is_file():
        raise EdgeKDError(f"{path}: no such artifact")
