"""`--target onnx`: the FP32 ONNX itself, and ONNX Runtime static INT8 for the CPU.

No fp16: ONNX Runtime's CPU provider has no fp16 kernels for most ops (it would insert casts
and run slower than fp32); FP16 is served by OpenVINO (FP16-compressed IR) and TensorRT.
The mechanics live in `edgekd.export.onnx_export` and `edgekd.export.ort_quant`.
"""

from __future__ import annotations

from dataclasses import replace

from edgekd.export.artifacts import Artifact
from edgekd.export.ort_quant import QUANT_FORMATS
from edgekd.export.targets import (
    CALIB_DATA, CALIB_METHOD, CALIB_SIZE, KEEP_FLOAT, VAL_SIZE, Option, Target, register_target,
)

QUANT_FORMAT = Option("quant_format", str, "ONNX Runtime INT8 form for the CPU artifact (default qoperator)",
                      ("int8",), choices=QUANT_FORMATS)


@register_target
class Onnx(Target):
    name = "onnx"
    format = "ONNX"
    suffix = ".onnx"
    runtime = "onnxruntime"
    precisions = ("fp32", "int8")
    options = (CALIB_DATA, CALIB_SIZE, CALIB_METHOD, QUANT_FORMAT, KEEP_FLOAT, VAL_SIZE)
    why_not = {
        "fp16": "ONNX Runtime's CPU provider has no fp16 kernels for most ops, so an fp16 ONNX "
        "runs slower than fp32 there; use --target openvino --precision fp16 (CPU) or "
        "--target tensorrt --precision fp16 (GPU)",
    }

    def build(self, precision: str) -> Artifact:
        onnx = self.inputs.onnx
        if precision == "fp32":  # the pipeline's ONNX is the artifact: dynamic batch, static batch-1 for latency
            return self.artifact("fp32", path=str(onnx.dynamic), latency_path=str(onnx.static or ""),
                                 build_seconds=self.inputs.onnx_seconds)
        return self._int8()

    def _int8(self) -> Artifact:
        from edgekd.export.int8_share import ort_int8_share
        from edgekd.export.ort_quant import OrtQuantConfig, quantize_accuracy_aware, quantize_onnx
        from edgekd.export.report import quant_note

        inp, int8, opts = self.inputs, self.int8, self.inputs.options
        cfg = OrtQuantConfig.for_cpu(quant_format=QUANT_FORMAT.of(opts), calib_method=CALIB_METHOD.of(opts) or "minmax",
                                     keep_float=KEEP_FLOAT.of(opts))
        dst = self.path("int8")
        if int8.val is not None and int8.goal is not None:
            q = quantize_accuracy_aware(inp.onnx.dynamic, dst, int8.calib, int8.val, inp.architecture, cfg, int8.goal,
                                        inp.threads)
        else:
            q = quantize_onnx(inp.onnx.dynamic, dst, int8.calib, inp.architecture, cfg)
        q = replace(q, int8_share=ort_int8_share(dst))
        return self.artifact("int8", path=str(dst), notes=[quant_note(q)], int8_share=q.int8_share)
