"""PyTorch -> ONNX: a dynamic-batch model plus a static batch-1 model, checked and slimmed.

Why the legacy exporter (`dynamo=False`): on this toolchain it exports ViT and ConvNeXt fast
and exactly, while the dynamo exporter fails on ConvNeXt with a dynamic batch from a batch-1
example (seen when this was chosen; not recorded in benchmarks/results). The static batch-1
model lets runtimes fold every shape computation for latency. onnxslim removes the shape
plumbing the exporter emits; its graph is kept only where it computes the exporter's outputs
(`slimmed_if_equal`). Default opset 20 (see OnnxExportConfig). ViT attention is exported with
separate q/k/v projections (export/attention.py) so that ONNX Runtime's transformer optimizer can
fuse it. A calibrated student's temperature is a `Div` at the
end of the graph (`with_temperature`), so every target built from this ONNX (ORT INT8, OpenVINO,
TensorRT) and any plain runtime consumer gets calibrated probabilities from a softmax alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.export import metadata as md_mod
from edgekd.export.attention import export_friendly

if TYPE_CHECKING:
    from edgekd.shared.card import StudentCard

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass
class OnnxExportConfig:
    # 20: GELU is one `Gelu` op. At 17/18 it is an Erf subgraph that ORT fuses in the float model
    # but not once Q/DQ nodes surround it, so ConvNeXt-F ORT INT8 ran much slower at 17 while FP32
    # did not change (measured when chosen; not recorded in benchmarks/results). Use 17 for TensorRT < 10.
    opset: int = 20
    slim: bool = True
    static_batch: int = 1  # the latency model's batch (0 = don't write one)


@dataclass
class OnnxExport:
    dynamic: Path
    static: Path | None


def with_temperature(model: Any, temperature: float) -> Any:
    """`model` whose output is logits / T (temperature scaling, fitted by the trainer); `model` itself at T = 1,
    so an uncalibrated graph has no extra node. The output stays logits: argmax, and so every gate, is unchanged."""
    if temperature == 1.0:
        return model
    import torch

    class TemperatureScaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x) / temperature

    return TemperatureScaled().eval()


def _export_one(model: Any, example: Any, path: Path, opset: int, dynamic: bool) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy exporter's DeprecationWarning / TracerWarnings
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None,
        )


def finalize_onnx(path: Path, md: dict, slim: bool = True) -> None:
    """Slim, stamp metadata, check and save in place (single file, no external data)."""
    import onnx

    proto = onnx.load(str(path))
    if slim:
        proto = slimmed_if_equal(proto)
    md_mod.set_onnx_metadata(proto, md)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def slimmed_if_equal(proto: Any) -> Any:
    """onnxslim's graph where it computes what the exporter's graph does on a random input, else the
    exporter's graph (with a warning). Why the check: onnxslim 0.1.98's constant folding changed the
    logits of a trained 48-px EfficientNet-Lite0 (timm's dynamic "same" padding), which verify would
    then have failed as an FP32 artifact; `tests/test_export_units.py` covers the fallback."""
    import numpy as np
    import onnxslim

    from edgekd.export.ort_quant import tensor_values  # an unoptimised ORT run of an in-memory graph

    def _run(model: Any, x: Any) -> Any:
        return tensor_values(model, [model.graph.output[0].name], x)[model.graph.output[0].name]

    slimmed = onnxslim.slim(proto)
    x = np.random.default_rng(0).standard_normal(_input_shape(proto), dtype=np.float32)
    want, got = _run(proto, x), _run(slimmed, x)
    if want.shape == got.shape and np.allclose(want, got, rtol=1e-4, atol=1e-4):
        return slimmed
    from edgekd.export.progress import log

    log.warning("onnxslim changed the model's outputs (max |diff| %.3g on a random input): kept the "
                "exporter's graph unslimmed", float(np.abs(want - got).max()) if want.shape == got.shape else np.inf)
    return proto


def _input_shape(proto: Any) -> tuple[int, ...]:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.dim_value > 0 else 2 for d in dims)  # a dynamic batch as 2


def export_onnx(model: Any, meta: StudentCard, out_dir: Path, cfg: OnnxExportConfig | None = None) -> OnnxExport:
    """Write `model.onnx` (dynamic batch) and `model.b1.onnx` (static batch 1) into out_dir, both
    dividing their logits by the card's temperature (`StudentCard.temperature`)."""
    import torch

    cfg = cfg or OnnxExportConfig()
    if cfg.opset < 17:
        from edgekd.errors import EdgeKDError

        raise EdgeKDError(f"--opset {cfg.opset}: opset >= 17 is required (LayerNormalization as one op)")
    out_dir.mkdir(parents=True, exist_ok=True)
    model, _ = export_friendly(model.eval())
    model = with_temperature(model, meta.temperature)
    c, h, w = meta.preprocess["input_size"]
    md = md_mod.artifact_metadata(meta, "fp32", INPUT_NAME, OUTPUT_NAME)
    dyn = out_dir / "model.onnx"
    with torch.inference_mode():
        _export_one(model, torch.randn(2, c, h, w), dyn, cfg.opset, dynamic=True)
    finalize_onnx(dyn, md, cfg.slim)
    static = None
    if cfg.static_batch:
        static = out_dir / f"model.b{cfg.static_batch}.onnx"
        with torch.inference_mode():
            _export_one(model, torch.randn(cfg.static_batch, c, h, w), static, cfg.opset, dynamic=False)
        finalize_onnx(static, md, cfg.slim)
    return OnnxExport(dyn, static)
