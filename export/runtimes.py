"""Torch-free runners for exported artifacts: one `predict(batch) -> logits` interface.

Why: verify, bench and predict must run the artifact exactly as a clinic box would, with
only `onnxruntime` / `openvino` installed (`pip install edgekd[runtime]`). This module never
imports torch or timm. A runner with a fixed batch (static-shape model) pads the last partial
batch and drops the padded rows, so callers can pass any batch size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.export.int8_share import int8_label
from edgekd.export.runner import ARTIFACT_PRECISION, Runner, RunnerConfig, check_artifact_path, readable_artifact

#: the INFERENCE_PRECISION_HINT an IR asks for, by its edgekd precision: an FP16 IR asks for f16
#: (a CPU without FP16 arithmetic resolves it to f32, and the runner reads back what it chose);
#: INT8 runs its float remainder in f32, like the accuracy-control search that certified it
OPENVINO_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}
#: OpenVINO element type -> edgekd precision name
_OV_TYPES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}


def openvino_hint(model: Any, requested: str | None) -> str | None:
    """The hint to compile `model` (an `openvino.Model`) with: `requested` as given, or, for
    ARTIFACT_PRECISION, the one its edgekd precision asks for (f32 for an IR without one)."""
    if requested != ARTIFACT_PRECISION:
        return requested
    from edgekd.export.metadata import decode

    key = ["edgekd", "precision"]
    precision = decode({"p": model.get_rt_info(key).astype(str)})["p"] if model.has_rt_info(key) else "fp32"
    return OPENVINO_HINTS.get(precision, "f32")


def precision_label(precision: str, int8_share: float | None = None, runs: str | None = None) -> str:
    """The precision column: `int8 (94 %)` (the INT8 share), `fp16 (runs fp32)` where the runtime
    computes a float artifact in another precision than it is named for, else the precision."""
    if int8_share is not None:
        return int8_label(int8_share)
    return f"{precision} (runs {runs})" if runs and precision != "int8" and runs != precision else precision


def ran_as(precision: str, compute_precision: str | None) -> str:
    """The precision an artifact is verified at: the float precision its runtime resolved (an FP16
    IR that runs f32 is held to f32's limits, one that runs bf16 to bf16's), else its own. INT8
    stays int8: its float remainder is not what it is named for (`int8_share` measures that)."""
    return precision if precision == "int8" or compute_precision is None else compute_precision


class OrtRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path: str | Path, cfg: RunnerConfig | None = None):
        import onnxruntime as ort

        super().__init__(path, cfg or RunnerConfig())
        t0 = time.perf_counter()
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.cfg.ort_opt_level]
        if self.cfg.threads:
            so.intra_op_num_threads = self.cfg.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        probe = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"]) if self.cfg.static_batch else None
        if probe is not None:  # make a dynamic-batch model static: ORT folds every shape op
            dim = probe.get_inputs()[0].shape[0]
            if isinstance(dim, str):
                so.add_free_dimension_override_by_name(dim, self.cfg.static_batch)
            del probe
        self.sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self.load_seconds = time.perf_counter() - t0
        inp = self.sess.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)
        if isinstance(inp.shape[0], int):
            self.fixed_batch = inp.shape[0]
        elif self.cfg.static_batch:
            self.fixed_batch = self.cfg.static_batch

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.input_name: x})[0]


class OpenVINORunner(Runner):
    runtime = "openvino"

    def __init__(self, path: str | Path, cfg: RunnerConfig | None = None):
        import openvino as ov

        super().__init__(path, cfg or RunnerConfig())
        t0 = time.perf_counter()
        core = ov.Core()
        model = core.read_model(str(self.path))
        inp = model.inputs[0]
        if self.cfg.static_batch:
            shape = list(inp.get_partial_shape().get_min_shape())
            shape[0] = self.cfg.static_batch
            model.reshape({inp.get_any_name(): shape})
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY" if self.cfg.latency else "THROUGHPUT"}
        if self.cfg.threads:
            config["INFERENCE_NUM_THREADS"] = self.cfg.threads
        hint = openvino_hint(model, self.cfg.inference_precision)
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        resolved = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.compute_precision = _OV_TYPES.get(resolved, resolved)
        self.load_seconds = time.perf_counter() - t0
        ps = self.compiled.inputs[0].get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else -1 for d in ps)
        if ps[0].is_static:
            self.fixed_batch = ps[0].get_length()

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data.copy()

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["inference_precision"] = self.compute_precision
        d["num_threads"] = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        return d


def open_to_verify(path: str | Path, precision: str, cfg: RunnerConfig) -> tuple[Runner, str]:
    """An artifact's runner and the precision verify holds it to: the one its runtime runs (`ran_as`)."""
    runner = open_runner(path, cfg)
    return runner, ran_as(precision, runner.compute_precision)


def open_runner(path: str | Path, cfg: RunnerConfig | None = None) -> Runner:
    """Pick the runtime from the artifact's suffix (.onnx / .xml / .engine)."""
    suffix = Path(path).suffix
    check_artifact_path(path)
    with readable_artifact(path):
        if suffix == ".onnx":
            return OrtRunner(path, cfg)
        if suffix == ".xml":
            return OpenVINORunner(path, cfg)
        from edgekd.export.tensorrt_runtime import TensorRTRunner

        return TensorRTRunner(path, cfg)

