"""`--target openvino`: OpenVINO IR in FP32, FP16 (FP16-compressed weights), BF16 and INT8 (NNCF).

The IR is converted from the pipeline's ONNX once per export and saved in each precision;
the mechanics live in `edgekd.export.openvino_export`. The BF16 IR is the FP32 IR marked bf16:
the runners compile it with the bf16 inference-precision hint (`runtimes.OPENVINO_HINTS`).
`--target openvino` / `all` plan it only where the CPU computes BF16 in hardware
(`bench.runs_bf16`): elsewhere OpenVINO emulates BF16, slower than f32 and less exact.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import Any

from edgekd.export.artifacts import Artifact
from edgekd.export.targets import CALIB_DATA, CALIB_SIZE, VAL_SIZE, Target, register_target


@register_target
class OpenVINO(Target):
    name = "openvino"
    format = "OpenVINO IR"
    suffix = ".xml"
    runtime = "openvino"
    precisions = ("fp32", "fp16", "bf16", "int8")
    options = (CALIB_DATA, CALIB_SIZE, VAL_SIZE)

    @classmethod
    def planned_precisions(cls) -> tuple[str, ...]:
        from edgekd.export.bench import cpu_info, runs_bf16

        bf16 = runs_bf16(cpu_info()["isa"])
        return tuple(p for p in cls.default_precisions if p != "bf16" or bf16)

    @cached_property
    def float_model(self) -> Any:
        """The `openvino.Model` of the FP32 ONNX; each build saves or quantizes a clone."""
        from edgekd.export.openvino_export import convert

        return convert(self.inputs.onnx.dynamic)

    def build(self, precision: str) -> Artifact:
        from edgekd.export import openvino_export as ovx
        from edgekd.export.int8_share import openvino_int8_share
        from edgekd.export.report import quant_note

        dst = self.path(precision)
        if precision != "int8":
            ovx.save_ir(self.float_model.clone(), dst, precision)
            return self.artifact(precision, path=str(dst))
        int8, inp = self.int8, self.inputs
        if int8.val is not None and int8.goal is not None:
            qmodel, q = ovx.quantize_accuracy_aware(self.float_model.clone(), int8.calib, int8.val, inp.architecture,
                                                    int8.goal, threads=inp.threads)
        else:
            qmodel, q = ovx.quantize_ir(self.float_model.clone(), int8.calib, inp.architecture)
        ovx.save_ir(qmodel, dst, "int8")
        q = replace(q, int8_share=openvino_int8_share(dst))
        return self.artifact("int8", path=str(dst), notes=[quant_note(q)], int8_share=q.int8_share)
