"""ONNX -> OpenVINO IR: FP32, FP16-compressed, and INT8 by NNCF post-training quantization.

Why from the ONNX (not the torch module): one traced graph feeds every target, so every
artifact comes from the same weights, and the conversion needs no torch. Why NNCF on the
OpenVINO model: NNCF's torch backend compiles a C++ extension on first use (minutes, and a
killed build leaves a lock that hangs later runs). ViTs need `ModelType.TRANSFORMER`, which
keeps LayerNorm/Softmax/GELU in float and uses the transformer-aware scheme (without it ViT
agreement collapsed when this was chosen; that run is not recorded in benchmarks/results). FP16-compressed IR halves the file; on CPU
it computes in the inference precision the runtime resolves (f16 where the CPU has FP16 arithmetic, else
f32), which the runner reads back. A BF16 IR keeps FP32 weights (one rounding, by the runtime, not
two via f16) and differs from the FP32 IR only in the precision its metadata names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edgekd.export import metadata as md_mod
from edgekd.export.calibration import CalibrationSet, nncf_dataset
from edgekd.export.int8_accuracy import AccuracySearch, QuantReport, SearchTry
from edgekd.export.ort_quant import arch_family, has_vnni, keep_float_layers

COMPUTE_OPS = ("Convolution", "GroupConvolution", "MatMul")

if TYPE_CHECKING:
    from edgekd.export.int8_accuracy import AccuracyTarget, ValidationSet


@dataclass
class OpenVINOQuantConfig:
    preset: str = "auto"  # auto -> mixed for transformers, performance otherwise
    fast_bias_correction: bool = True
    ignored_types: tuple[str, ...] = ()  # extra OpenVINO op types to keep float
    # True: attention's activation MatMuls (q@k^T, attn@v) and OpenVINO's fused attention stay float.
    # Off: the 224-px ViT-T then runs all of its MACs INT8 and passes verify, as the float form does with
    # attention's share float, at a latency within this box's noise of it (benchmarks/results/
    # export_cpu-intel-r-xeon-r-processor-2-60ghz.md, ov-int8 vs ov-int8-attention-float)
    keep_activation_matmuls: bool = False
    # images NNCF's accuracy control ranks the quantizers on (the ones INT8 changes most; NNCF's default 300):
    # ranking is most of the search's time, and on the quickstart 100 reverted the same ops as 300
    ranking_subset_size: int | None = 100
    # NNCF's overflow fix (7-bit weights in the first quantized layer) guards u8s8 products that saturate
    # the 16-bit accumulate of pre-VNNI CPUs (the rule of ORT's reduce_range, `OrtQuantConfig.for_cpu`).
    # None = off where the exporting CPU has VNNI, NNCF's default elsewhere. On the quickstart student,
    # with the stem float, it was what kept the first plain PTQ from passing (benchmarks/results/
    # quickstart_ov_int8.md)
    overflow_fix: bool | None = None
    keep_float_layers: tuple[str, ...] | None = None  # node-name substrings; None = the family's (ort_quant)
    extra: dict = field(default_factory=dict)


def activation_matmul_names(model: Any) -> list[str]:
    """MatMuls whose inputs are both computed (attention q@k^T, attn@v), not weights."""
    def from_constant(node: Any) -> bool:
        while node.get_type_name() in ("Convert", "Reshape", "Transpose") and node.get_input_size() >= 1:
            node = node.input_value(0).get_node()
        return node.get_type_name() == "Constant"

    return [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MatMul"
            and not any(from_constant(op.input_value(i).get_node()) for i in range(op.get_input_size()))]


def convert(onnx_path: Path) -> Any:
    """Read the ONNX into an `openvino.Model` (metadata copied into rt_info)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    md = md_mod.read_metadata(onnx_path)
    md_mod.set_openvino_metadata(model, md)
    return model


def save_ir(model: Any, path: Path, precision: str) -> Path:
    import openvino as ov

    model.set_rt_info(f'"{precision}"', ["edgekd", "precision"])
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=(precision == "fp16"))
    return path


def _nncf_kwargs(model: Any, calib: CalibrationSet, architecture: str, cfg: OpenVINOQuantConfig) -> dict[str, Any]:
    """NNCF arguments shared by plain PTQ and accuracy control."""
    import nncf

    family = arch_family(architecture)
    kwargs: dict[str, Any] = dict(subset_size=len(calib), fast_bias_correction=cfg.fast_bias_correction)
    if family == "vit":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if cfg.preset != "auto":
        kwargs["preset"] = nncf.QuantizationPreset(cfg.preset)
    layers = keep_float_layers(architecture) if cfg.keep_float_layers is None else cfg.keep_float_layers
    names = (activation_matmul_names(model) if cfg.keep_activation_matmuls else []) + layer_op_names(model, layers)
    # OpenVINO may have fused attention into ScaledDotProductAttention: that op is attention's MatMuls
    types = list(cfg.ignored_types) + (["ScaledDotProductAttention"] if cfg.keep_activation_matmuls else [])
    if types or names:
        kwargs["ignored_scope"] = nncf.IgnoredScope(types=types, names=names, validate=False)
    overflow_fix = not has_vnni() if cfg.overflow_fix is None else cfg.overflow_fix
    if not overflow_fix:
        kwargs["advanced_parameters"] = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.DISABLE)
    kwargs.update(cfg.extra)
    return kwargs


def layer_op_names(model: Any, layers: tuple[str, ...]) -> list[str]:
    """Conv/MatMul ops whose names contain one of `layers` (by default the family's kept-float layers,
    `ort_quant.keep_float_layers`: both runtimes keep the same few most sensitive convs float)."""
    return [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() in COMPUTE_OPS
            and any(k in op.get_friendly_name() for k in layers)]


def quantize_ir(model: Any, calib: CalibrationSet, architecture: str,
                cfg: OpenVINOQuantConfig | None = None) -> tuple[Any, QuantReport]:
    """NNCF PTQ of an `openvino.Model` on the calibration set -> (int8 model, report)."""
    import nncf

    kwargs = _nncf_kwargs(model, calib, architecture, cfg or OpenVINOQuantConfig())
    scheme = f"NNCF PTQ ({'transformer' if arch_family(architecture) == 'vit' else 'default'})"
    report = QuantReport(scheme, len(calib), float_nodes=[], float_nodes_label="float nodes added by accuracy control")
    return nncf.quantize(model, nncf_dataset(calib), **kwargs), report


def float_compute_ops(model: Any) -> list[str]:
    """Conv/MatMul ops whose activation input is not quantized (no FakeQuantize feeds input 0)."""
    return [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() in COMPUTE_OPS
            and op.input_value(0).get_node().get_type_name() != "FakeQuantize"]


def compiled_predict(model: Any, threads: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """`predict(x) -> logits` of an in-memory `openvino.Model`, f32 hint (parity must not depend on BF16)."""
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
    return lambda x: np.asarray(compiled(x)[0])


def quantize_accuracy_aware(model: Any, calib: CalibrationSet, val: "ValidationSet", architecture: str,
                            target: "AccuracyTarget", cfg: OpenVINOQuantConfig | None = None,
                            threads: int = 2) -> tuple[Any, QuantReport]:
    """Plain NNCF PTQ, then `nncf.quantize_with_accuracy_control` (metric: top-1 agreement with
    PyTorch; it reverts the most harmful quantizers to float) while the candidate misses `target`
    on the search half of the validation slice or fails certification on the other half; after a
    failed certification the search goal rises by the shortfall (twice at most). The report lists
    the compute ops accuracy control left in float, every try and the batch-1 latency of both."""
    from edgekd.export.int8_accuracy import paired_batch1_ms, score_predict, search_and_check
    from edgekd.export.progress import search_try

    cfg = cfg or OpenVINOQuantConfig()
    search, goal, check, pass_check = search_and_check(val, target)
    qmodel, report = quantize_ir(model.clone(), calib, architecture, cfg)
    all_int8, base_float = qmodel, set(float_compute_ops(qmodel))
    tries: list[SearchTry] = []
    for attempt in range(4):
        predict = compiled_predict(qmodel, threads)
        s, c = score_predict(predict, search), score_predict(predict, check)
        method = "nncf.quantize" if attempt == 0 else "nncf.quantize_with_accuracy_control"
        tries.append(SearchTry(method, goal.min_agreement_pct, s, c))
        search_try(tries)  # one console line per candidate: the search is the long part
        certified, stuck = s.meets(goal) and c.meets(pass_check), s.meets(goal) and goal.min_agreement_pct >= 100
        if certified or stuck or attempt == 3:
            break
        if s.meets(goal):  # met on the search half, not on the held-back half: aim higher
            goal = goal.raised(max(pass_check.min_agreement_pct - c.agreement_pct, 0.1))
        qmodel = _accuracy_control(model, calib, search, architecture, cfg, goal)
    lat_all, lat = paired_batch1_ms(compiled_predict(all_int8, threads), compiled_predict(qmodel, threads), val.x[:1])
    added = sorted(set(float_compute_ops(qmodel)) - base_float)
    search_report = AccuracySearch(tries, len(search), len(check), pass_check, lat_all, lat)
    return qmodel, replace(report, float_nodes=added, searched_float_nodes=added, search=search_report)


def _accuracy_control(model: Any, calib: CalibrationSet, search: "ValidationSet", architecture: str,
                      cfg: OpenVINOQuantConfig, goal: "AccuracyTarget") -> Any:
    """NNCF's accuracy-aware PTQ aiming at `goal` agreement with PyTorch on the search images."""
    import nncf

    kwargs = _nncf_kwargs(model, calib, architecture, cfg)
    if "advanced_parameters" in kwargs:  # the same object, under this function's name for it
        kwargs["advanced_quantization_parameters"] = kwargs.pop("advanced_parameters")
    if cfg.ranking_subset_size:
        kwargs["advanced_accuracy_restorer_parameters"] = nncf.AdvancedAccuracyRestorerParameters(
            ranking_subset_size=cfg.ranking_subset_size)
    items = [(search.x[i : i + 1], int(search.ref_pred[i])) for i in range(len(search))]

    def agreement(compiled: Any, data: Any) -> float:
        return float(np.mean([int(np.asarray(compiled(x)[0]).argmax()) == ref for x, ref in data]))

    return nncf.quantize_with_accuracy_control(
        model.clone(), nncf_dataset(calib), nncf.Dataset(items, lambda it: it[0]), agreement,
        max_drop=(100.0 - goal.min_agreement_pct) / 100.0, drop_type=nncf.DropType.ABSOLUTE, **kwargs)
