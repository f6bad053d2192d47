"""Metadata carried INSIDE every artifact, so a consumer can preprocess without edgekd.

Why: a clinic integration gets an `.onnx` or `.xml` and nothing else; it must know the
class names, input size, mean/std, interpolation and which weights it came from. ONNX stores
them in `metadata_props`, OpenVINO IR in `rt_info` under `edgekd`, TensorRT in the engine
sidecar JSON. Values are JSON strings under the same keys everywhere. Torch-free and
`onnx`-free at read time (ONNX Runtime reads ONNX metadata), so `predict` works on a
runtime-only install. `operating_point` is present only when the export chose one
(`--positive-class`, export/operating_point.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd.errors import EdgeKDError
from edgekd.export.runner import check_artifact_path, readable_artifact
from edgekd.shared.card import StudentCard
from edgekd.shared.clinical.operating_point import OperatingPoint

#: the keys every artifact carries (prefix `edgekd.` in ONNX, `rt_info["edgekd"][key]` in IR)
KEYS = (
    "classes", "input_size", "mean", "std", "interpolation", "crop_pct",
    "architecture", "edgekd_version", "weights_sha256", "precision", "input_name", "output_name", "temperature",
    "operating_point",
)
ONNX_PREFIX = "edgekd."


def artifact_metadata(card: StudentCard, precision: str, input_name: str = "input",
                      output_name: str = "logits") -> dict[str, Any]:
    """The metadata an artifact carries, from the student's card (model.json)."""
    pp = card.preprocess or {}
    return {
        "classes": list(card.classes),
        "input_size": list(pp["input_size"]),
        "mean": list(pp["mean"]),
        "std": list(pp["std"]),
        "interpolation": pp.get("interpolation", "bicubic"),
        "crop_pct": float(pp.get("crop_pct", 1.0)),
        "architecture": card.architecture,
        "edgekd_version": card.edgekd_version or _edgekd_version(),
        "weights_sha256": card.weights_sha256,
        "precision": precision,
        "input_name": input_name,
        "output_name": output_name,
        # informational: the graph already divides its logits by T (export/onnx_export.py), so a consumer
        # applies softmax and nothing else; 1.0 = uncalibrated
        "temperature": card.temperature,
    }


def _edgekd_version() -> str:
    from edgekd import __version__

    return __version__


def preprocess_dict(md: dict[str, Any]) -> dict[str, Any]:
    """Metadata -> `PreprocessConfig.from_dict` input."""
    return {k: md[k] for k in ("input_size", "mean", "std", "interpolation", "crop_pct")}


def operating_point(md: dict[str, Any]) -> OperatingPoint | None:
    """The threshold the artifact carries (None: exported without `--positive-class`)."""
    if md.get("operating_point") is None:
        return None
    point = OperatingPoint.from_dict(md["operating_point"])
    if md["classes"][point.index] != point.positive_class:
        raise EdgeKDError(f"the artifact's operating point names {point.positive_class!r} but its class "
                          f"{point.index} is {md['classes'][point.index]!r}; fix: re-export it with --positive-class")
    return point


def encode(md: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in md.items()}


def decode(raw: dict[str, str]) -> dict[str, Any]:
    out = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def set_onnx_metadata(model: Any, md: dict[str, Any]) -> None:
    """Write into an `onnx.ModelProto` (replacing older edgekd keys)."""
    keep = [p for p in model.metadata_props if not p.key.startswith(ONNX_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in encode(md).items():
        p = model.metadata_props.add()
        p.key, p.value = ONNX_PREFIX + k, v
    model.producer_name = "edgekd"
    model.producer_version = str(md.get("edgekd_version", ""))


def update_onnx_metadata(path: Path, changes: dict[str, Any]) -> None:
    """Add or replace keys of a saved ONNX's edgekd metadata in place (what export decides after the ONNX
    is written, like the operating point)."""
    import onnx

    proto = onnx.load(str(path))
    old = decode({p.key[len(ONNX_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(ONNX_PREFIX)})
    set_onnx_metadata(proto, {**old, **changes})
    onnx.save(proto, str(path))


def set_openvino_metadata(model: Any, md: dict[str, Any]) -> None:
    """Write into an `openvino.Model`'s rt_info (saved into the .xml)."""
    for k, v in encode(md).items():
        model.set_rt_info(v, ["edgekd", k])


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata of an `.onnx`, `.xml` or `.engine` artifact, using only its runtime."""
    path = Path(path)
    check_artifact_path(path)
    with readable_artifact(path):
        return _read_metadata(path)


def _read_metadata(path: Path) -> dict[str, Any]:
    if path.suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:  # e.g. a Jetson image with TensorRT only: the onnx package reads it too
            import onnx

            raw = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        else:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            raw = sess.get_modelmeta().custom_metadata_map
        return decode({k[len(ONNX_PREFIX):]: v for k, v in raw.items() if k.startswith(ONNX_PREFIX)})
    if path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        if not model.has_rt_info(["edgekd"]):
            return {}
        return decode({k: model.get_rt_info(["edgekd", k]).astype(str) for k in KEYS if model.has_rt_info(["edgekd", k])})
    from edgekd.export.trt_sidecar import read_sidecar  # .engine: check_artifact_path allowed nothing else

    return dict(read_sidecar(path).metadata)
