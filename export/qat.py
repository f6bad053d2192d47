"""Quantization-aware self-distillation: the student distilled into its own INT8 copy.

Why: post-training quantization picks INT8 ranges for fixed weights; where that cannot reach
the verify bar without keeping more than `MAX_FLOAT_MACS` of the compute float, the weights
must move. NNCF's PyTorch QAT (`nncf.quantize` on the torch model gives fake-quantized
convs whose ranges train) is fine-tuned for a short budget on training images, distilling
from the frozen FP32 student itself: KL(teacher/tau || student/tau) * tau^2 plus CE, the
paper's teacher-student idea applied to deployment (the student already agrees with itself;
the KL keeps every class's logit, not just top-1, where INT8 puts it).

BatchNorm is folded into its conv BEFORE quantizing: the weights that are fake-quantized
are then the weights the runtime runs (ONNX Runtime fuses Q/DQ into QLinearConv only when no
BatchNormalization sits between a conv and its output quantizer), and no statistic can drift
while training. The result leaves as one Q/DQ ONNX (native QuantizeLinear/DequantizeLinear,
what TensorRT and OpenVINO also read) and, for ONNX Runtime CPU, as ORT's own fused QOperator
graph of that file (`to_qoperator`). Needs the `train` extra (torch) and nncf.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edgekd.export import progress
from edgekd.export.calibration import CalibrationSet
from edgekd.export.ort_quant import nncf_ort_kwargs

if TYPE_CHECKING:
    import torch

    from edgekd.export.int8_accuracy import QuantReport, ValidationSet

    from edgekd.shared.card import StudentCard


@dataclass(frozen=True)
class QatConfig:
    steps: int = 300  # a few epochs of the calibration + search images at batch 32: minutes on 2 cores
    batch_size: int = 32
    lr: float = 1e-5  # NNCF's advice for QAT fine-tuning: the weights are already good, only nudge them
    tau: float = 4.0
    kd_weight: float = 1.0  # loss = CE + kd_weight * KL * tau^2
    seed: int = 0


@dataclass
class QatResult:
    model: Any  # the fake-quantized torch model (NNCF), eval mode
    folded: Any  # the BN-folded float model the quantizers were inserted into (its weights before QAT)
    folded_bn: int  # BatchNorms folded into their convs
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # per step


def use_eager_fake_quant() -> None:
    """Run NNCF's CPU fake quantization as its plain-torch reference ops. Why: by default NNCF
    compiles a C++ extension on first use (minutes on a 2-core box, and a killed build leaves a
    lock that hangs later runs), then falls back to the same ops under torch.compile (another
    compiler). The reference ops are what both fall back to, so the numbers are NNCF's."""
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    from nncf.torch.quantization.reference import torch_executor

    class EagerReference:
        Quantize_forward = staticmethod(torch_executor.forward)
        Quantize_backward = staticmethod(torch_executor.backward)

    QuantizedFunctionsCPU._loaded_namespace = EagerReference


def fold_batchnorm(model: "torch.nn.Module", example: "torch.Tensor") -> int:
    """Fold every BatchNorm2d whose input is a Conv2d's output into that conv (found by one
    forward with hooks, so any architecture works); the BatchNorm keeps only what follows the
    normalization (timm's BatchNormAct2d: its activation). Returns how many were folded."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    outputs: dict[int, tuple[torch.nn.Module, torch.Tensor]] = {}  # id(output) -> (conv, output kept alive)
    pairs: list[tuple[torch.nn.Module, torch.nn.Module]] = []
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda m, _, out: outputs.__setitem__(id(out), (m, out))) for m in convs]
    hooks += [m.register_forward_hook(lambda m, inp, _: pairs.append((outputs[id(inp[0])][0], m))
                                      if id(inp[0]) in outputs else None)
              for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        model.eval()(example)
    for h in hooks:
        h.remove()
    names = {m: n for n, m in model.named_modules()}
    for conv, bn in pairs:
        model.set_submodule(names[conv], fuse_conv_bn_eval(conv, bn))
        model.set_submodule(names[bn], _after_normalization(bn))
    return len(pairs)


def _after_normalization(bn: "torch.nn.Module") -> "torch.nn.Module":
    """What a folded BatchNorm still does: nothing, or timm BatchNormAct2d's dropout + activation."""
    import torch

    rest = [getattr(bn, a) for a in ("drop", "act") if isinstance(getattr(bn, a, None), torch.nn.Module)]
    return torch.nn.Sequential(*rest) if rest else torch.nn.Identity()


def distill_loss(student: "torch.Tensor", teacher: "torch.Tensor", labels: "torch.Tensor", tau: float,
                 kd_weight: float = 1.0) -> "torch.Tensor":
    """CE on the labels + kd_weight * KL(softmax(teacher/tau) || softmax(student/tau)) * tau^2."""
    import torch.nn.functional as F

    kl = F.kl_div(F.log_softmax(student / tau, 1), F.log_softmax(teacher / tau, 1), log_target=True,
                  reduction="batchmean")
    return F.cross_entropy(student, labels) + kd_weight * kl * tau * tau


def freeze_batchnorm(model: "torch.nn.Module") -> None:
    """Training mode except BatchNorm (any left unfolded): its running statistics stay the FP32 student's."""
    import torch

    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def quantization_aware_distill(student: "torch.nn.Module", calib: CalibrationSet, train: CalibrationSet,
                               architecture: str, cfg: QatConfig | None = None,
                               teacher: "torch.nn.Module | None" = None) -> QatResult:
    """Fold BN, quantize with NNCF (ranges from `calib`), then fine-tune on `train` (training
    images only) against the frozen FP32 `teacher` (default: the student itself, before folding)."""
    import nncf
    import torch

    cfg = cfg or QatConfig()
    use_eager_fake_quant()
    teacher = (teacher or copy.deepcopy(student)).eval().requires_grad_(False)
    model = copy.deepcopy(student)
    t0 = time.perf_counter()
    folded = fold_batchnorm(model, torch.from_numpy(calib.x[:1]))
    batches = [torch.from_numpy(b) for b in calib.batches(cfg.batch_size)]
    qmodel = nncf.quantize(copy.deepcopy(model), nncf.Dataset(batches), subset_size=len(batches),
                           **nncf_ort_kwargs(architecture))
    losses = _fine_tune(qmodel, teacher, train, cfg)
    return QatResult(qmodel.eval(), model, folded, cfg.steps, time.perf_counter() - t0, losses)


def trained_float(result: QatResult) -> "torch.nn.Module":
    """The BN-folded float student with the QAT-trained weights and no quantizers: what ONNX
    Runtime's own quantizer takes (`edgekd.export.ort_quant`), its weights now at home on the INT8 grid."""
    model = copy.deepcopy(result.folded)
    trained = {k: v for k, v in result.model.state_dict().items() if k in model.state_dict()}
    model.load_state_dict(trained, strict=True)
    return model.eval()


def _fine_tune(model: "torch.nn.Module", teacher: "torch.nn.Module", train: CalibrationSet, cfg: QatConfig) -> list[float]:
    """`cfg.steps` Adam steps on random batches of `train`; the teacher's logits under no_grad."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed)
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.labels).long()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    freeze_batchnorm(model)
    losses = []
    for _ in progress.bar(range(cfg.steps), cfg.steps, "QAT", "step"):  # the long loop of a 224-px export
        idx = torch.randint(0, len(x), (cfg.batch_size,), generator=g)
        with torch.no_grad():
            target = teacher(x[idx])
        loss = distill_loss(model(x[idx]), target, y[idx], cfg.tau, cfg.kd_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def export_qdq_onnx(model: "torch.nn.Module", card: "StudentCard", dst: Path, opset: int = 20) -> Path:
    """The QAT model as a Q/DQ ONNX: NNCF's quantizers traced as native QuantizeLinear/DequantizeLinear
    pairs (`nncf.strip`'s native form, without the torchao it imports), through the same
    `export_onnx` as the FP32 artifact (temperature, slimming, metadata), stamped int8."""
    import shutil
    import tempfile

    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    from edgekd.export.metadata import update_onnx_metadata
    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx

    for _, q in get_hook_storage(model).named_hooks():
        if isinstance(q, BaseQuantizer):
            q.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        shutil.move(export_onnx(model, card, Path(d), OnnxExportConfig(opset=opset, static_batch=0)).dynamic, dst)
    update_onnx_metadata(dst, {"precision": "int8"})
    return dst


def to_qoperator(qdq: Path, dst: Path) -> Path:
    """ONNX Runtime's own fused graph of a Q/DQ ONNX (QLinearConv, QGemm, ...), saved at the
    EXTENDED level: the QOperator form ORT CPU runs fastest, with no layout (NCHWc) rewrite
    bound to this machine's SIMD width. Why: ORT re-derives that fusion at every session start
    from a Q/DQ file, yet times it slower than the FP32 model (benchmarks/results/int8_qat.md)."""
    import onnxruntime as ort

    from edgekd.export.metadata import read_metadata, update_onnx_metadata

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(qdq), so, providers=["CPUExecutionProvider"])
    update_onnx_metadata(dst, read_metadata(qdq))
    return dst


def training_images(calib: CalibrationSet, search: CalibrationSet) -> CalibrationSet:
    """What QAT trains on: the calibration images and the search half of the validation slice,
    never the certification half, which must judge the result unseen."""
    return CalibrationSet(np.concatenate([calib.x, search.x]), np.concatenate([calib.labels, search.labels]),
                          [*calib.paths, *search.paths])


def qat_then_quantize(weights: Path, calib: CalibrationSet, val: "ValidationSet", architecture: str,
                      quantize: Callable[[Path], "QuantReport"]) -> tuple["QuantReport", float]:
    """`edgekd export --int8 qat`: self-distil the student at `weights` into its fake-quantized copy on the
    calibration images and the validation slice's search half, export the fine-tuned float student to a
    temporary ONNX and let `quantize` (the accuracy-aware ORT INT8 quantizer) make the artifact from it, so the
    certification half still judges it unseen. Returns the quantizer's report, its scheme prefixed with
    the QAT, and the minutes spent."""
    import tempfile
    from dataclasses import replace

    from edgekd.export import contract
    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx

    student, card = contract.load_student(weights)
    search, _ = val.halves()
    t0 = time.perf_counter()
    result = quantization_aware_distill(student, calib, training_images(calib, search.images), architecture)
    with tempfile.TemporaryDirectory() as d:
        q = quantize(export_onnx(trained_float(result), card, Path(d), OnnxExportConfig(static_batch=0)).dynamic)
    q = replace(q, scheme=f"QAT ({result.steps} steps of self-distillation, {result.folded_bn} BatchNorms folded) "
                          f"then {q.scheme}")
    return q, (time.perf_counter() - t0) / 60
