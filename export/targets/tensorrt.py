"""`--target tensorrt`: the ONNX a TensorRT engine is built from, and the engine where possible.

Engines are bound to the GPU and the TensorRT version that built them, so the export always
writes the ONNX to ship (`model.fp16.onnx`, FP16 weights; `model.int8.qdq.onnx`, symmetric Q/DQ
from ONNX Runtime's quantizer) and builds the engine only on a machine with an NVIDIA GPU and
TensorRT; elsewhere the engine is reported as skipped with the command to run on the device
(`edgekd.export.cli.build_on_device`). The mechanics live in `edgekd.export.tensorrt_export`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from edgekd.errors import EdgeKDError
from edgekd.export.artifacts import Artifact
from edgekd.export.targets import (
    CALIB_DATA, CALIB_METHOD, CALIB_SIZE, KEEP_FLOAT, Option, Target, register_target,
)

if TYPE_CHECKING:
    from edgekd.export.tensorrt_export import TrtBuildConfig

MIN_BATCH = Option("min_batch", int, "optimization profile: smallest batch (default 1)")
OPT_BATCH = Option("opt_batch", int, "optimization profile: the batch TensorRT tunes for (default 1)")
MAX_BATCH = Option("max_batch", int, "optimization profile: largest batch (default: the verify --batch-size; "
                   "32 with --build-on-device)")


@register_target
class TensorRT(Target):
    name = "tensorrt"
    format = "TensorRT engine"
    suffix = ".engine"
    runtime = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    default_precisions = ("fp16", "int8")
    options = (CALIB_DATA, CALIB_SIZE, CALIB_METHOD, KEEP_FLOAT, MIN_BATCH, OPT_BATCH, MAX_BATCH)

    @classmethod
    def check_options(cls, values: Mapping[str, object]) -> None:
        b = [o.of(values) for o in (MIN_BATCH, OPT_BATCH, MAX_BATCH)]
        if all(v is not None for v in b) and not (1 <= b[0] <= b[1] <= b[2]):  # type: ignore[operator]
            raise EdgeKDError(f"TensorRT profile needs 1 <= min <= opt <= max batch, got {b[0]}/{b[1]}/{b[2]}")

    @cached_property
    def unavailable(self) -> str | None:
        """Why engines cannot be built here (no GPU, no TensorRT), or None."""
        from edgekd.export.tensorrt_export import tensorrt_unavailable_reason

        return tensorrt_unavailable_reason()

    def build(self, precision: str) -> Artifact:
        from edgekd.export import tensorrt_export as trtx

        onnx = self.shipped_onnx(precision)
        if self.unavailable:
            return self.artifact(precision, status="skipped", shipped=[str(onnx)], reason=(
                f"{self.unavailable}; ship {onnx.name} and run `edgekd export --build-on-device --onnx "
                f"{onnx.name} --precision {precision}` on the device"))
        engine = self.path(precision)
        trtx.build_engine(onnx, engine, build_config(precision, self.inputs.options, max(self.inputs.batch_size, 1)))
        return self.artifact(precision, path=str(engine))

    def shipped_onnx(self, precision: str) -> Path:
        """The ONNX the engine is built from: strongly typed TensorRT takes its precision from it."""
        from edgekd.export import tensorrt_export as trtx

        fp32 = self.inputs.onnx.dynamic
        if precision == "fp16":
            return trtx.write_fp16_onnx(fp32, self.inputs.out / self.name / "model.fp16.onnx")
        if precision == "int8":
            from edgekd.export.ort_quant import OrtQuantConfig, quantize_onnx

            qdq = self.inputs.out / self.name / "model.int8.qdq.onnx"
            qdq.parent.mkdir(parents=True, exist_ok=True)
            opts = self.inputs.options
            cfg = OrtQuantConfig.for_tensorrt(calib_method=CALIB_METHOD.of(opts) or "minmax", keep_float=KEEP_FLOAT.of(opts))
            quantize_onnx(fp32, qdq, self.int8.calib, self.inputs.architecture, cfg)
            return qdq
        return fp32


def build_config(precision: str, values: Mapping[str, object], max_batch: int) -> TrtBuildConfig:
    """The engine's optimization profile from the batch options; `max_batch` when none is given."""
    from edgekd.export.tensorrt_export import TrtBuildConfig

    return TrtBuildConfig(precision=precision, min_batch=MIN_BATCH.of(values) or 1, opt_batch=OPT_BATCH.of(values) or 1,
                          max_batch=MAX_BATCH.of(values) or max_batch)
