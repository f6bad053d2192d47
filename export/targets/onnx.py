"""`--target onnx`: the FP32 ONNX itself, and ONNX Runtime static INT8 for the CPU.

No fp16: ONNX Runtime's CPU provider has no fp16 kernels for most ops (it would insert casts
and run slower than fp32); FP16 is served by OpenVINO (FP16-compressed IR) and TensorRT.
The mechanics live in `edgekd.export.onnx_export` and `edgekd.export.ort_quant`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.errors import EdgeKDError
from edgekd.export.artifacts import Artifact
from edgekd.export.ort_quant import QUANT_FORMATS, QUANTIZERS
from edgekd.export.targets import (
    CALIB_DATA, CALIB_METHOD, CALIB_SIZE, KEEP_FLOAT, VAL_SIZE, Option, Target, register_target,
)

if TYPE_CHECKING:
    from edgekd.export.int8_accuracy import QuantReport
    from edgekd.export.ort_quant import OrtQuantConfig

# default ptq: QAT, as measured on the quickstart student, costs minutes and agrees less than PTQ
# (benchmarks/results/int8_qat.md), so it is opt-in
INT8_METHOD = Option("int8", str, "how the ONNX Runtime INT8 artifact is made: ptq, qat (quantization-aware "
                     "self-distillation from the FP32 student, then the --quantizer) or auto = qat when accuracy-aware "
                     "PTQ would keep more than 10 %% of the compute float (default ptq)", ("int8",),
                     choices=("auto", "ptq", "qat"))
QUANT_FORMAT = Option("quant_format", str, "ONNX Runtime INT8 form for the CPU artifact, with --quantizer ort "
                      "(default qoperator)", ("int8",), choices=QUANT_FORMATS)
QUANTIZER = Option("quantizer", str, "who computes the ONNX Runtime INT8 ranges: ort (ORT's quantize_static) or nncf "
                   "(NNCF's PTQ, written as U8S8 Q/DQ); default per architecture: nncf for EfficientNet/MobileNet, "
                   "else ort", ("int8",), choices=QUANTIZERS)


@register_target
class Onnx(Target):
    name = "onnx"
    format = "ONNX"
    suffix = ".onnx"
    runtime = "onnxruntime"
    precisions = ("fp32", "int8")
    options = (CALIB_DATA, CALIB_SIZE, CALIB_METHOD, QUANT_FORMAT, QUANTIZER, KEEP_FLOAT, VAL_SIZE, INT8_METHOD)
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
        from edgekd.export.report import quant_note

        opts, dst = self.inputs.options, self.path("int8")
        cfg = cpu_quant_config(opts, self.inputs.architecture)
        method, notes = INT8_METHOD.of(opts) or "ptq", []
        q = None if method == "qat" else self._ptq(self.inputs.onnx.dynamic, dst, cfg)
        if method == "qat" or (method == "auto" and q.search is not None and not q.search.target_met):
            q, notes = self._qat(dst, cfg, q)
        q = replace(q, int8_share=ort_int8_share(dst))
        return self.artifact("int8", path=str(dst), notes=[quant_note(q), *notes], int8_share=q.int8_share)

    def _ptq(self, src: Path, dst: Path, cfg: OrtQuantConfig) -> QuantReport:
        """ORT static INT8 of `src`, accuracy-aware (within the float budget) unless accuracy control is off."""
        from edgekd.export.ort_quant import quantize_accuracy_aware, quantize_onnx

        inp, int8 = self.inputs, self.int8
        if int8.val is None or int8.goal is None:
            return quantize_onnx(src, dst, int8.calib, inp.architecture, cfg)
        return quantize_accuracy_aware(src, dst, int8.calib, int8.val, inp.architecture, cfg, int8.goal, inp.threads)

    def _qat(self, dst: Path, cfg: OrtQuantConfig, ptq: QuantReport | None) -> tuple[QuantReport, list[str]]:
        """Quantization-aware self-distillation, then the same accuracy-aware ORT quantizer on the fine-tuned
        float student (`edgekd.export.qat.qat_then_quantize`). Returns its report and the PTQ-vs-QAT note."""
        from edgekd.export import qat

        inp, int8 = self.inputs, self.int8
        if int8.val is None or inp.student is None:
            raise EdgeKDError("--int8 qat needs accuracy control (its certification half judges the result); "
                              "fix: drop --no-accuracy-control or pass --int8 ptq")
        q, minutes = qat.qat_then_quantize(inp.student, int8.calib, int8.val, inp.architecture,
                                           lambda trained: self._ptq(trained, dst, cfg))
        return q, [_ptq_vs_qat(ptq, q, minutes)]


def cpu_quant_config(opts: dict, architecture: str) -> OrtQuantConfig:
    """The CPU artifact's quantizer settings from the request; flags of ORT's quantizer are refused where NNCF's
    makes the artifact (they would be ignored)."""
    from edgekd.export.ort_quant import OrtQuantConfig

    cfg = OrtQuantConfig.for_cpu(quant_format=QUANT_FORMAT.of(opts), calib_method=CALIB_METHOD.of(opts),
                                 keep_float=KEEP_FLOAT.of(opts), quantizer=QUANTIZER.of(opts))
    ort_only = [o.flag for o in (QUANT_FORMAT, CALIB_METHOD) if o.of(opts) is not None]
    if ort_only and cfg.resolved_quantizer(architecture) == "nncf":
        raise EdgeKDError(f"{', '.join(ort_only)} set ORT's quantizer, but the ONNX Runtime INT8 of {architecture} is "
                          "made by NNCF's (QDQ U8S8, its own ranges); fix: add --quantizer ort, or drop those flags")
    return cfg


def _ptq_vs_qat(ptq: QuantReport | None, qat: QuantReport, minutes: float) -> str:
    """PTQ and QAT side by side: certification agreement, float compute, batch-1 latency, minutes."""
    def line(q: QuantReport) -> str:
        s = q.search
        if s is None:
            return "not measured"
        return (f"certification {s.shipped.certification}, {s.latency_ms:.2f} ms batch 1, "
                f"{'target met' if s.target_met else s.over_budget or 'target NOT met'}")

    why = "PTQ not tried (--int8 qat)" if ptq is None else f"PTQ: {line(ptq)}"
    return f"INT8 by QAT, not PTQ. {why}; QAT ({minutes:.1f} min): {line(qat)}"
