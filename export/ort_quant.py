"""ONNX Runtime static INT8: QOperator U8S8 for the CPU artifact, symmetric QDQ for TensorRT.

Why these settings (toolchain-notes.md, re-measured in benchmarks/export_cpu.py):
- only Conv/MatMul/Gemm are quantized: quantizing every op collapsed ViT agreement to 74%;
- per-architecture ops stay float (LayerNorm/GELU/Softmax in ViTs, LayerNorm in ConvNeXt),
  configurable via `keep_float` (op types or node-name substrings);
- CPU: QOperator U8S8 was the fastest ORT form on x86 (QDQ S8S8 ran slower than FP32 for
  ConvNeXt); the format is configurable (`qoperator` | `qdq`);
- TensorRT: explicit quantization needs symmetric INT8 Q/DQ pairs (zero point 0) on both
  activations and per-channel weights; TensorRT fuses them itself, no calibrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.export import metadata as md_mod
from edgekd.export.calibration import CalibrationSet

BASE_OP_TYPES = ("Conv", "MatMul", "Gemm")

#: pseudo op type: a MatMul whose inputs are both activations (attention q@k^T and attn@v)
ACTIVATION_MATMUL = "ActivationMatMul"

#: architecture family -> ops kept in float (quantizing them is known to hurt accuracy).
#: ViT attention matmuls: measured on a fine-tuned ViT-T (300 Fashion-MNIST test images),
#: quantizing them gave 97.0% top-1 agreement and 64 ms; keeping them float 98.7% and 52 ms
#: (their per-call dynamic Q/DQ costs more than the int8 GEMM saves on 197x197 tiles).
KEEP_FLOAT_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "vit": ("LayerNormalization", "Gelu", "Erf", "Softmax", ACTIVATION_MATMUL),
    "convnext": ("LayerNormalization",),
    # EfficientNet-Lite0 (offline preset, 64 px, 1000 test images): everything int8 gave 91.6%
    # agreement / 1.2 pt drop; the stem and depthwise convs in float 97.7% / 0.1 pt
    # (benchmarks/results/lite0_int8_keep_float.md).
    "efficientnet": ("conv_stem", "conv_dw"),
    "cnn": (),
}


def arch_family(architecture: str) -> str:
    a = architecture.lower()
    if any(k in a for k in ("vit", "deit", "beit", "eva", "swin", "levit")):
        return "vit"
    if "convnext" in a:
        return "convnext"
    if "efficientnet" in a or "mobilenet" in a:
        return "efficientnet"
    return "cnn"


@dataclass
class OrtQuantConfig:
    quant_format: str = "qoperator"  # qoperator (CPU, U8S8) | qdq
    calib_method: str = "minmax"  # minmax | entropy | percentile
    per_channel: bool = True
    symmetric_activations: bool = False  # True for TensorRT (S8 activations, zero point 0)
    reduce_range: bool = False  # set for CPUs without VNNI (7-bit weights avoid u8s8 saturation)
    op_types: tuple[str, ...] = BASE_OP_TYPES
    keep_float: tuple[str, ...] | None = None  # None = per-architecture default
    calib_batch: int = 16
    extra: dict = field(default_factory=dict)

    @classmethod
    def for_tensorrt(cls, **kw: Any) -> "OrtQuantConfig":
        """Symmetric S8 Q/DQ; weights stay float behind a Q/DQ pair and biases stay float,
        the form TensorRT's explicit quantization parses and fuses."""
        extra = {"QuantizeBias": False, "AddQDQPairToWeight": True, **kw.pop("extra", {})}
        return cls(quant_format="qdq", symmetric_activations=True, extra=extra, **kw)


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


def quantize_onnx(src: Path, dst: Path, calib: CalibrationSet, architecture: str, cfg: OrtQuantConfig | None = None) -> dict:
    """Static INT8 quantization of `src` into `dst`; returns what was done (for the report)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg = cfg or OrtQuantConfig()
    keep = KEEP_FLOAT_BY_FAMILY[arch_family(architecture)] if cfg.keep_float is None else tuple(cfg.keep_float)
    pre = dst.with_name(dst.stem + ".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    proto = onnx.load(str(pre))
    excluded, kept_types = plan_float_nodes(proto, keep)
    op_types = [t for t in cfg.op_types if t not in keep]
    input_name = proto.graph.input[0].name
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.calib_method]
    extra = {"ActivationSymmetric": cfg.symmetric_activations, "WeightSymmetric": True, **cfg.extra}
    quantize_static(
        str(pre), str(dst), _reader(calib, input_name, cfg.calib_batch),
        quant_format=QuantFormat.QDQ if cfg.quant_format == "qdq" else QuantFormat.QOperator,
        activation_type=QuantType.QInt8 if cfg.symmetric_activations else QuantType.QUInt8,
        weight_type=QuantType.QInt8, per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
        calibrate_method=method, op_types_to_quantize=op_types, nodes_to_exclude=excluded,
        extra_options=extra,
    )
    pre.unlink(missing_ok=True)
    # metadata: copy from the float model, precision -> int8
    q = onnx.load(str(dst))
    src_md = md_mod.decode({p.key[len(md_mod.ONNX_PREFIX):]: p.value for p in onnx.load(str(src)).metadata_props
                            if p.key.startswith(md_mod.ONNX_PREFIX)})
    md_mod.set_onnx_metadata(q, {**src_md, "precision": "int8"})
    onnx.checker.check_model(q)
    onnx.save(q, str(dst))
    return {
        "quant_format": cfg.quant_format, "activation": "s8" if cfg.symmetric_activations else "u8",
        "weights": "s8 per-channel" if cfg.per_channel else "s8 per-tensor", "calib_method": cfg.calib_method,
        "calib_images": len(calib), "op_types": op_types, "kept_float_op_types": kept_types,
        "kept_float_nodes": len(excluded),
    }


def count_qdq_pairs(path: Path) -> tuple[int, int]:
    """(#QuantizeLinear, #DequantizeLinear): what TensorRT's explicit quantization consumes."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    return ops.count("QuantizeLinear"), ops.count("DequantizeLinear")
