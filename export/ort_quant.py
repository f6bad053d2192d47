"""ONNX Runtime static INT8: QOperator U8S8 for the CPU artifact, symmetric QDQ for TensorRT.

Why these settings (the forms are timed side by side in benchmarks/results/export_cpu.md):
- only Conv/MatMul/Gemm are quantized: quantizing every op type broke ViT agreement when these
  defaults were chosen (that run is not recorded in benchmarks/results);
- per-architecture ops stay float (LayerNorm/GELU/Softmax in ViTs, LayerNorm in ConvNeXt),
  configurable via `keep_float` (op types or node-name substrings);
- CPU: QOperator U8S8 is the fastest ORT form on x86 (QDQ S8S8 runs slower than FP32 for
  ConvNeXt); the format is configurable (`QUANT_FORMATS`);
- TensorRT: explicit quantization needs symmetric INT8 Q/DQ pairs (zero point 0) on both
  activations and per-channel weights; TensorRT fuses them itself, no calibrator;
- EfficientNet/MobileNet: NNCF's PTQ writes the ranges (`QUANTIZER_BY_FAMILY`), in a Q/DQ form ORT
  fuses into U8S8 QLinearConv (`activations_to_uint8`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.export import metadata as md_mod
from edgekd.export.calibration import CalibrationSet
from edgekd.export.int8_accuracy import MAX_FLOAT_MACS, AccuracySearch, QuantReport, SearchTry

if TYPE_CHECKING:
    from edgekd.export.int8_accuracy import AccuracyTarget, ValidationSet

BASE_OP_TYPES = ("Conv", "MatMul", "Gemm")
QUANT_FORMATS = ("qoperator", "qdq", "qdq_s8s8")  # QOperator U8S8, QDQ U8S8, QDQ S8S8
#: mean-minmax = each image's min/max, averaged over the images (NNCF's default aggregation), where minmax takes
#: the extremes of all of them: a few outlier images no longer set a tensor's range
CALIB_METHODS = ("minmax", "mean-minmax", "entropy", "percentile")

#: pseudo op type: a MatMul whose inputs are both activations (attention q@k^T and attn@v)
ACTIVATION_MATMUL = "ActivationMatMul"

#: architecture family -> ops kept in float (quantizing them is known to hurt accuracy).
#: ViT: attention's activation MatMuls (q@k^T, attn@v) are INT8, not listed: with them float the 224-px
#: ViT-T's accuracy-aware search stopped at 85 % INT8, under issue 18's 90 % bar; with them INT8 it
#: keeps 16 more nodes float and ends at 90 %, at a latency within this box's noise of the float form
#: (benchmarks/results/export_cpu-intel-r-xeon-r-processor-2-60ghz.md, ort-int8 vs
#: ort-int8-attention-float). `ACTIVATION_MATMUL` in `OrtQuantConfig.keep_float` keeps them float.
KEEP_FLOAT_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "vit": ("LayerNormalization", "Gelu", "Erf", "Softmax"),
    "convnext": ("LayerNormalization",),
    # EfficientNet-Lite0: the stem and the first depthwise conv (full resolution) in float, a few %
    # of the MACs, the most sensitive convs (benchmarks/results/lite0_int8_keep_float.md). Not every
    # depthwise conv: they are more than the float budget (`MAX_FLOAT_MACS`) of Lite0's compute. With
    # mean-minmax calibration (CALIB_BY_FAMILY) these two are what lets the quickstart student pass
    # within the budget; minmax, the search's own picks, bias correction or QAT did not
    # (benchmarks/results/int8_qat.md).
    "efficientnet": ("conv_stem", "blocks.0.0/conv_dw"),
    "cnn": (),
}


#: who computes the INT8 ranges: "ort" (ORT's quantize_static) or "nncf" (NNCF's PTQ on the ONNX graph, fast
#: bias correction, `quantize_nncf`)
QUANTIZERS = ("ort", "nncf")

#: architecture family -> quantizer when none is asked for (else "ort"). EfficientNet-Lite0 at 224 px: ORT's
#: quantizer could not pass verify within the float budget, by PTQ or QAT; NNCF's ranges in this form are
#: measured beside it (ort-int8 vs ort-int8-ort-quantizer), and on ViT-T and ConvNeXt-F the other way round
#: (ort-int8-nncf), in benchmarks/results/export_cpu-intel-r-xeon-r-processor-2-60ghz.md
QUANTIZER_BY_FAMILY: dict[str, str] = {"efficientnet": "nncf"}


#: architecture family -> ORT calibration when none is asked for (else minmax). mean-minmax raised
#: both Lite0 students' agreement and lowered ViT-T's below the bar (benchmarks/results/int8_qat.md,
#: export_cpu-intel-r-xeon-r-processor-2-60ghz.md)
CALIB_BY_FAMILY: dict[str, str] = {"efficientnet": "mean-minmax"}


def keep_float_layers(architecture: str) -> tuple[str, ...]:
    """The family's kept-float entries that name layers (node-name substrings, not op types): its most
    sensitive convs, which the OpenVINO INT8 keeps float too (`openvino_export._nncf_kwargs`)."""
    return tuple(k for k in KEEP_FLOAT_BY_FAMILY[arch_family(architecture)] if not k[:1].isupper())


def default_calibration(architecture: str) -> str:
    return CALIB_BY_FAMILY.get(arch_family(architecture), "minmax")


def arch_family(architecture: str) -> str:
    a = architecture.lower()
    if any(k in a for k in ("vit", "deit", "beit", "eva", "swin", "levit")):
        return "vit"
    if "convnext" in a:
        return "convnext"
    if "efficientnet" in a or "mobilenet" in a:
        return "efficientnet"
    return "cnn"


# onnxruntime.transformers fusions before quantizing: all = SkipLayerNormalization, BiasGelu and
# Attention (float: static quantization has no QAttention); no-attention = the first two, so the
# q/k/v GEMMs stay INT8; none (the default). On ViT-T INT8 is fastest with none, then
# no-attention, then all: the fused float kernels split the QLinear chains, and ORT's own
# session-level fusions do better (benchmarks/results/export_cpu.md).
FUSION_MODES = ("all", "no-attention", "none")


@dataclass
class OrtQuantConfig:
    quant_format: str = "qoperator"  # one of QUANT_FORMATS (quantizer "ort"; NNCF's is always QDQ U8S8)
    quantizer: str | None = None  # one of QUANTIZERS; None = per architecture (QUANTIZER_BY_FAMILY)
    calib_method: str | None = None  # one of CALIB_METHODS; None = per architecture (CALIB_BY_FAMILY)
    per_channel: bool = True
    symmetric_activations: bool = False  # True for TensorRT (S8 activations, zero point 0)
    reduce_range: bool = False  # set for CPUs without VNNI (7-bit weights avoid u8s8 saturation)
    op_types: tuple[str, ...] = BASE_OP_TYPES
    keep_float: tuple[str, ...] | None = None  # None = per-architecture default
    exclude_nodes: tuple[str, ...] = ()  # exact node names kept float (the accuracy-aware search's picks)
    transformer_fusions: str = "none"  # one of FUSION_MODES
    # NNCF's fast bias correction before ORT's quantizer (`nncf_bias_correct`). Off: on the quickstart
    # Lite0 it did not raise agreement (benchmarks/results/int8_qat.md)
    bias_correction: bool = False
    calib_batch: int = 16
    extra: dict = field(default_factory=dict)

    @classmethod
    def for_cpu(cls, quant_format: str | None = None, **kw: Any) -> "OrtQuantConfig":
        """The CPU artifact: reduce_range (7-bit weights) only where there is no VNNI: without
        VNNI, u8s8 products can saturate the 16-bit accumulate of pmaddubsw; VNNI has none."""
        return cls(quant_format=quant_format or "qoperator", reduce_range=not has_vnni(), **kw)

    @classmethod
    def for_tensorrt(cls, **kw: Any) -> "OrtQuantConfig":
        """Symmetric S8 Q/DQ; weights stay float behind a Q/DQ pair and biases stay float,
        the form TensorRT's explicit quantization parses and fuses."""
        extra = {"QuantizeBias": False, "AddQDQPairToWeight": True, **kw.pop("extra", {})}
        # no onnxruntime.transformers fusions: their com.microsoft ops are not ONNX, TensorRT cannot parse them
        return cls(quant_format="qdq", quantizer="ort", symmetric_activations=True, extra=extra,
                   transformer_fusions="none", **kw)

    def resolved_quantizer(self, architecture: str) -> str:
        q = self.quantizer or QUANTIZER_BY_FAMILY.get(arch_family(architecture), "ort")
        if q not in QUANTIZERS:
            raise ValueError(f"quantizer={q!r}: use one of {QUANTIZERS}")
        return q


def has_vnni() -> bool:
    """x86 CPU with a VNNI int8 dot product (AVX-512 VNNI, AVX-VNNI or AMX-INT8)."""
    from edgekd.export.bench import cpu_info

    isa = cpu_info()["isa"]
    return bool(isa.get("avx512_vnni") or isa.get("avx_vnni") or isa.get("amx_int8"))


def even_batch(n: int, batch: int) -> int:
    """Largest batch size <= `batch` that divides `n`.

    ORT's histogram calibrators (entropy, percentile) stack every batch's outputs into one array
    and fail on a short last batch (onnxruntime#18792), so every calibration batch has one size.
    """
    return next(b for b in range(min(batch, n), 0, -1) if n % b == 0)


def _reader(calib: CalibrationSet, input_name: str, batch: int) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    batch = even_batch(len(calib.x), batch)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = ({input_name: b} for b in calib.batches(batch))

    return _Reader()


def plan_float_nodes(model: Any, keep_float: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(node names kept in float, op types kept in float) for an onnx.ModelProto.

    A `keep_float` entry equal to an op type in the graph keeps every node of that type;
    `ActivationMatMul` keeps MatMuls whose inputs are both activations (no initializer);
    any other entry is a node-name substring (e.g. "/blocks.0/" keeps the first block).
    """
    graph_ops = {n.op_type for n in model.graph.node}
    by_type = {k for k in keep_float if k in graph_ops}
    by_name = [k for k in keep_float if k not in graph_ops and not k[:1].isupper()]
    consts = {i.name for i in model.graph.initializer} | {
        o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    act_mm = ACTIVATION_MATMUL in keep_float
    excluded = [
        n.name for n in model.graph.node
        if n.op_type in by_type or any(k in n.name for k in by_name)
        or (act_mm and n.op_type == "MatMul" and not any(i in consts for i in n.input))
    ]
    kept = sorted(by_type | ({ACTIVATION_MATMUL} if act_mm and any(n.op_type == "MatMul" for n in model.graph.node) else set()))
    return excluded, kept


def _plan(proto: Any, architecture: str, cfg: OrtQuantConfig) -> tuple[list[str], list[str], list[str]]:
    """(excluded node names, op types kept float, op types to quantize) for a preprocessed model."""
    keep = KEEP_FLOAT_BY_FAMILY[arch_family(architecture)] if cfg.keep_float is None else tuple(cfg.keep_float)
    excluded, kept_types = plan_float_nodes(proto, keep)
    excluded += [n for n in cfg.exclude_nodes if n not in excluded]
    return excluded, kept_types, [t for t in cfg.op_types if t not in keep]


def fusion_mode(cfg: OrtQuantConfig) -> str:
    if cfg.transformer_fusions not in FUSION_MODES:
        raise ValueError(f"transformer_fusions={cfg.transformer_fusions!r}: use one of {FUSION_MODES}")
    return cfg.transformer_fusions


def prepare_float(src: Path, dst: Path, architecture: str, cfg: OrtQuantConfig) -> list[str]:
    """The float graph quantization starts from: ORT's pre-processing (shape inference, constant
    folding), then, if the fusion mode asks for it, ORT's transformer optimizer (SkipLayerNormalization
    = residual Add + LayerNorm in one kernel, BiasGelu, Attention). Returns the fusions."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    mode = fusion_mode(cfg)
    if mode == "none":
        return []
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers.optimizer").setLevel(logging.ERROR)  # "producer not matched": edgekd
    options = FusionOptions("vit")
    options.enable_attention = mode == "all"
    opt = optimize_model(str(dst), model_type="vit", num_heads=0, hidden_size=0, opt_level=0, optimization_options=options)
    opt.save_model_to_file(str(dst))
    return [f"{k} x{v}" for k, v in opt.get_fused_operator_statistics().items() if v]


def nncf_ort_kwargs(architecture: str, overflow_fix: bool | None = None) -> dict[str, Any]:
    """NNCF quantization arguments in a scheme ONNX Runtime's kernels run: per-tensor activations
    (NNCF's CPU scheme quantizes a depthwise conv's input per channel, which ORT cannot fuse into
    QLinearConv); ViTs get NNCF's transformer scheme. `overflow_fix` (7-bit weights): None = NNCF's default."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    advanced = AdvancedQuantizationParameters(activations_quantization_params=QuantizationParameters(per_channel=False))
    if overflow_fix is not None:
        advanced.overflow_fix = nncf.OverflowFix.ENABLE if overflow_fix else nncf.OverflowFix.DISABLE
    kw: dict[str, Any] = {"advanced_parameters": advanced}
    if arch_family(architecture) == "vit":
        kw["model_type"] = nncf.ModelType.TRANSFORMER
    return kw


def _nncf_ptq(model: Any, calib: CalibrationSet, float_nodes: list[str], **kw: Any) -> Any:
    """NNCF's PTQ of the ONNX `model` on every calibration image (batch-1 feeds), fast bias correction,
    `float_nodes` ignored; `kw`: the scheme (`nncf_ort_kwargs`, a preset). Returns the Q/DQ ModelProto."""
    import nncf

    name = model.graph.input[0].name
    data = nncf.Dataset([{name: calib.x[i : i + 1]} for i in range(len(calib))])
    return nncf.quantize(model, data, subset_size=len(calib), fast_bias_correction=True,
                         ignored_scope=nncf.IgnoredScope(names=float_nodes, validate=False), **kw)


def nncf_bias_correct(model: Any, calib: CalibrationSet, architecture: str, float_nodes: list[str]) -> int:
    """Write NNCF's fast-bias-corrected Conv/Gemm biases into the float onnx.ModelProto `model`, in place.

    Why: ORT's quantize_static rounds weights and activations without correcting the mean shift
    that rounding puts on each output channel; NNCF's PTQ does (fast bias correction, on by
    default). NNCF quantizes a copy with the same calibration images (`float_nodes` ignored, as
    ORT will keep them float); only the corrected bias initializers (updated in place under their
    own names) are taken, into the Q/DQ-free float graph ORT's quantizer then starts from.
    Returns how many biases changed.
    """
    import copy

    from onnx import numpy_helper

    corrected = _nncf_ptq(copy.deepcopy(model), calib, float_nodes, **nncf_ort_kwargs(architecture))
    new = {i.name: i for i in corrected.graph.initializer}
    biases = {n.input[2] for n in model.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2}
    changed = 0
    for init in model.graph.initializer:
        if init.name in biases and init.name in new:
            b = numpy_helper.to_array(new[init.name])
            changed += not np.array_equal(b, numpy_helper.to_array(init))
            init.CopyFrom(numpy_helper.from_array(b, init.name))
    return changed


def quantize_nncf(model: Any, dst: Path, calib: CalibrationSet, architecture: str, float_nodes: list[str],
                  cfg: OrtQuantConfig) -> str:
    """NNCF's PTQ of the float onnx.ModelProto `model` into `dst`, as a Q/DQ graph ORT runs in U8S8 kernels;
    returns the scheme for the report.

    NNCF's mixed preset (symmetric per-channel weights, asymmetric activations, per tensor so ORT can fuse
    a depthwise conv), fast bias correction, `float_nodes` ignored; the overflow fix (7-bit weights) where
    ORT would reduce_range. Its activation quantizers come out int8; `activations_to_uint8` moves them to
    the uint8 ORT's x86 kernels fuse."""
    import nncf
    import onnx

    q = _nncf_ptq(model, calib, float_nodes, preset=nncf.QuantizationPreset.MIXED,
                  **nncf_ort_kwargs(architecture, overflow_fix=cfg.reduce_range))
    moved = activations_to_uint8(q)
    onnx.save(q, str(dst))
    return (f"NNCF PTQ (mixed preset, fast bias correction{', overflow fix' if cfg.reduce_range else ''}) as QDQ "
            f"u8/s8 per-channel ({moved} activation quantizers moved to uint8)")


def activations_to_uint8(model: Any) -> int:
    """Move a Q/DQ onnx.ModelProto's int8 activation quantizers to uint8, in place; returns how many.

    q + 128 with zero point + 128 dequantizes to the same values over the same 256 levels, so the graph
    computes what it did. Why: ORT's x86 Q/DQ fusions into QLinearConv are built around uint8 activations;
    with NNCF's int8 ones ORT left a 224-px Lite0's projection convs, and the convs reading them, in float
    (the moved form's share is the ort-int8 row of benchmarks/results/export_cpu-*.md)."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def movable(q: Any) -> bool:
        zp = inits.get(q.input[2]) if len(q.input) > 2 else None
        return (q.op_type == "QuantizeLinear" and q.input[0] not in inits and zp is not None
                and zp.data_type == onnx.TensorProto.INT8
                and all(r.op_type == "DequantizeLinear" and r.input[2] == q.input[2] for r in readers.get(q.output[0], [])))

    moved = [q for q in model.graph.node if movable(q)]
    for q in moved:
        name = f"{q.output[0]}_zero_point_u8"
        zp = numpy_helper.to_array(inits[q.input[2]]).astype(np.int16) + 128
        model.graph.initializer.append(numpy_helper.from_array(zp.astype(np.uint8), name))
        for node in (q, *readers.get(q.output[0], [])):
            node.input[2] = name
    outputs = {q.output[0] for q in moved}
    for vi in model.graph.value_info:
        if vi.name in outputs:
            vi.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return len(moved)


def quantize_onnx(src: Path, dst: Path, calib: CalibrationSet, architecture: str,
                  cfg: OrtQuantConfig | None = None) -> QuantReport:
    """Static INT8 quantization of `src` into `dst` by the config's quantizer; returns what was done (for the report)."""
    import onnx

    cfg = cfg or OrtQuantConfig()
    pre = dst.with_name(dst.stem + ".pre.onnx")
    fusions = prepare_float(src, pre, architecture, cfg)
    proto = onnx.load(str(pre))
    excluded, kept_types, op_types = _plan(proto, architecture, cfg)
    if cfg.resolved_quantizer(architecture) == "nncf":
        scheme = quantize_nncf(proto, dst, calib, architecture, excluded, cfg)
    else:
        scheme = _quantize_static(pre, proto, dst, calib, architecture, cfg, excluded, op_types)
    pre.unlink(missing_ok=True)
    stamp_int8_metadata(src, dst)
    return QuantReport(
        scheme=scheme, calib_images=len(calib), float_nodes=excluded,
        compute_nodes=sum(n.op_type in cfg.op_types for n in proto.graph.node),
        float_compute_nodes=sum(n.op_type in cfg.op_types and n.name in excluded for n in proto.graph.node),
        float_op_types=kept_types, fusions=fusions, searched_float_nodes=list(cfg.exclude_nodes),
    )


def _quantize_static(pre: Path, proto: Any, dst: Path, calib: CalibrationSet, architecture: str, cfg: OrtQuantConfig,
                     excluded: list[str], op_types: list[str]) -> str:
    """ORT's quantize_static of the float graph `pre` (loaded: `proto`) into `dst`; returns the scheme."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    corrected = nncf_bias_correct(proto, calib, architecture, excluded) if cfg.bias_correction else None
    if corrected is not None:
        onnx.save(proto, str(pre))
    input_name = proto.graph.input[0].name
    calib_method = cfg.calib_method or default_calibration(architecture)
    method = {"minmax": CalibrationMethod.MinMax, "mean-minmax": CalibrationMethod.MinMax,
              "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[calib_method]
    mean = calib_method == "mean-minmax"  # ORT averages the ranges of the batches it is fed: feed single images
    extra = {"ActivationSymmetric": cfg.symmetric_activations, "WeightSymmetric": True,
             **({"CalibMovingAverage": True} if mean else {}), **cfg.extra}
    s8_act = cfg.symmetric_activations or cfg.quant_format == "qdq_s8s8"
    quantize_static(
        str(pre), str(dst), _reader(calib, input_name, 1 if mean else cfg.calib_batch),
        quant_format=QuantFormat.QOperator if cfg.quant_format == "qoperator" else QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if s8_act else QuantType.QUInt8,
        weight_type=QuantType.QInt8, per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
        calibrate_method=method, op_types_to_quantize=op_types, nodes_to_exclude=excluded,
        extra_options=extra,
    )
    weights = "s8 per-channel" if cfg.per_channel else "s8 per-tensor"
    return (f"ORT static {cfg.quant_format} {'s8' if s8_act else 'u8'}/{weights}"
            f"{', reduce_range' if cfg.reduce_range else ''}, {calib_method}"
            f"{'' if corrected is None else f', NNCF fast bias correction ({corrected} biases)'}")


def stamp_int8_metadata(src: Path, dst: Path) -> None:
    """Give the quantized `dst` the float `src`'s edgekd metadata with precision int8 (the runners and
    verify read it), then check and save it."""
    import onnx

    q = onnx.load(str(dst))
    src_md = md_mod.decode({p.key[len(md_mod.ONNX_PREFIX):]: p.value for p in onnx.load(str(src)).metadata_props
                            if p.key.startswith(md_mod.ONNX_PREFIX)})
    md_mod.set_onnx_metadata(q, {**src_md, "precision": "int8"})
    onnx.checker.check_model(q)
    onnx.save(q, str(dst))


def tensor_values(model: Any, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Values of intermediate tensors `names` (made graph outputs) for input batch x."""
    import onnx
    import onnxruntime as ort

    have = {o.name for o in model.graph.output}
    for n in names:
        if n not in have:
            model.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(names, {model.graph.input[0].name: x})))


def rank_sensitivity(src: Path, calib: CalibrationSet, architecture: str, cfg: OrtQuantConfig, x: np.ndarray,
                     workdir: Path, quantized: Path | None = None) -> list[tuple[str, float]]:
    """Quantized nodes, worst first, by the quantization noise each one ADDS to its output.

    A QDQ copy (same ranges, removable activations kept so tensor names match the float graph)
    and the float graph run on `x`; for node n with relative output error e_out and relative error
    e_in already on its activation input (from upstream nodes), n's own share is e_out^2 - e_in^2
    (independent noise powers add). Ranking by e_out alone would blame every node downstream of
    the first bad one. `quantized`: a Q/DQ graph of these ranges already made (NNCF's first try, which
    keeps the float graph's tensor names), ranked as it is instead of quantizing again.
    """
    import onnx

    pre, qdq = workdir / "rank.pre.onnx", quantized or workdir / "rank.qdq.onnx"
    prepare_float(src, pre, architecture, cfg)
    if quantized is None:
        qcfg = replace(cfg, quant_format="qdq", extra={**cfg.extra, "QDQKeepRemovableActivations": True})
        quantize_onnx(src, qdq, calib, architecture, qcfg)
    fmodel, qmodel = onnx.load(str(pre)), onnx.load(str(qdq))
    excluded, _, op_types = _plan(fmodel, architecture, cfg)
    consts = {i.name for i in fmodel.graph.initializer}
    nodes = [n for n in fmodel.graph.node if n.op_type in op_types and n.name not in excluded]
    ins = {n.name: [i for i in n.input if i and i not in consts] for n in nodes}
    names = sorted({t for n in nodes for t in (*ins[n.name], n.output[0])})
    qnames = {t for n in qmodel.graph.node for t in n.output} | {i.name for i in qmodel.graph.input}
    names = [t for t in names if t in qnames]
    f, q = tensor_values(fmodel, names, x), tensor_values(qmodel, names, x)

    def rel(t: str) -> float:
        if t not in f:
            return 0.0
        return float(np.linalg.norm(q[t] - f[t]) / max(np.linalg.norm(f[t]), 1e-12))

    added = {n.name: rel(n.output[0]) ** 2 - max([rel(t) ** 2 for t in ins[n.name]] or [0.0]) for n in nodes}
    return sorted(added.items(), key=lambda kv: -kv[1])


def search_schedule(n: int) -> list[int]:
    """How many of the worst nodes to keep float on each try: 1, 2, 4, ... then all n."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n] if n else []


def float_macs_share(pre: Any, float_nodes: list[str]) -> float:
    """The share of a float graph's Conv/MatMul/Gemm MACs in `float_nodes` (batch 1)."""
    from edgekd.export.int8_share import onnx_node_macs

    macs = onnx_node_macs(pre)
    return sum(macs.get(n, 0) for n in set(float_nodes)) / max(sum(macs.values()), 1)


def quantize_accuracy_aware(src: Path, dst: Path, calib: CalibrationSet, val: "ValidationSet", architecture: str,
                            cfg: OrtQuantConfig, target: "AccuracyTarget", threads: int = 2,
                            max_float_macs: float = MAX_FLOAT_MACS) -> QuantReport:
    """Quantize; while the candidate misses `target` on the search half of the validation slice
    or fails certification on the other half, revert more of the most sensitive nodes to float
    (1, 2, 4, ... by `rank_sensitivity`), but never more than `max_float_macs` of the compute:
    a try past it is not made, and the report says why (`AccuracySearch.over_budget`). The report
    lists the nodes kept float, every try and the batch-1 latency of the first candidate vs the result."""
    import shutil
    import tempfile

    import onnx

    from edgekd.export.int8_accuracy import paired_batch1_ms, score_predict, search_and_check
    from edgekd.export.progress import search_try
    from edgekd.export.runner import RunnerConfig
    from edgekd.export.runtimes import open_runner

    search, goal, check, pass_check = search_and_check(val, target)
    tries: list[SearchTry] = []

    def trial(c: OrtQuantConfig, k: int) -> tuple[QuantReport, bool]:
        report = quantize_onnx(src, dst, calib, architecture, c)
        predict = open_runner(dst, RunnerConfig(threads=threads)).predict
        s, ch = score_predict(predict, search), score_predict(predict, check)
        tries.append(SearchTry(f"{k} most sensitive nodes float", goal.min_agreement_pct, s, ch))
        search_try(tries)  # one console line per candidate: the search is the long part
        return report, s.meets(goal) and ch.meets(pass_check)

    def runner(path: Path) -> Any:
        return open_runner(path, RunnerConfig(threads=threads, static_batch=1)).predict

    report, ok = trial(cfg, 0)
    over_budget = None
    with tempfile.TemporaryDirectory() as d:
        all_int8 = Path(d) / "all_int8.onnx"
        shutil.copy(dst, all_int8)
        if not ok:
            nncf_qdq = all_int8 if cfg.resolved_quantizer(architecture) == "nncf" else None
            ranked = rank_sensitivity(src, calib, architecture, cfg, search.x[:32], Path(d), nncf_qdq)
            pre = onnx.load(str(Path(d) / "rank.pre.onnx"))
            for k in search_schedule(len(ranked)):
                c = replace(cfg, exclude_nodes=tuple(n for n, _ in ranked[:k]))
                share = float_macs_share(pre, _plan(pre, architecture, c)[0])
                if share > max_float_macs:
                    over_budget = (f"PTQ cannot pass within the float budget: the next try ({k} nodes float) keeps "
                                   f"{share:.1%} of the MACs float, more than {max_float_macs:.0%}")
                    break
                report, ok = trial(c, k)
                if ok:
                    break
        lat_all, lat = paired_batch1_ms(runner(all_int8), runner(dst), val.x[:1])
    search_report = AccuracySearch(tries, len(search), len(check), pass_check, lat_all, lat, over_budget)
    return replace(report, search=search_report)


def count_qdq_pairs(path: Path) -> tuple[int, int]:
    """(#QuantizeLinear, #DequantizeLinear): what TensorRT's explicit quantization consumes."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    return ops.count("QuantizeLinear"), ops.count("DequantizeLinear")
