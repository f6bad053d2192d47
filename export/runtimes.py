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

from edgekd.export.runner import Runner, RunnerConfig, check_artifact_path, readable_artifact


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
        if self.cfg.inference_precision:
            config["INFERENCE_PRECISION_HINT"] = self.cfg.inference_precision
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
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
        d["inference_precision"] = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        d["num_threads"] = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        return d


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

