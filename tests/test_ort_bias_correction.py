"""ONNX Runtime's quantizer as edgekd.export.ort_quant drives it, on a tiny CNN: NNCF's fast bias correction ahead
of it, and the mean-minmax calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nncf")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekd.export.calibration import CalibrationSet  # noqa: E402
from edgekd.export.int8_share import ort_int8_share  # noqa: E402
from edgekd.export.ort_quant import OrtQuantConfig, nncf_bias_correct, quantize_onnx  # noqa: E402

SIZE, CLASSES = 16, 4


def _tiny_cnn(path: Path) -> Path:
    """Conv-Relu-Conv-Relu-pool-Gemm, with biases (a BN-folded student's form)."""
    rng = np.random.default_rng(0)
    w = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8),
         "w2": rng.normal(0, 0.2, (16, 8, 3, 3)), "b2": rng.normal(0, 0.1, 16),
         "w3": rng.normal(0, 0.3, (CLASSES, 16)), "b3": rng.normal(0, 0.1, CLASSES)}
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1] * 4),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def calib() -> CalibrationSet:
    x = np.random.default_rng(1).uniform(-1, 1, (32, 3, SIZE, SIZE)).astype(np.float32) + 0.5
    return CalibrationSet(x, np.zeros(len(x), np.int64), [f"img{i}" for i in range(len(x))])


def _biases(model) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.startswith("b")}


def test_nncf_bias_correction_changes_the_biases_in_place(tmp_path: Path, calib: CalibrationSet):
    model = onnx.load(str(_tiny_cnn(tmp_path / "f.onnx")))
    before = _biases(model)
    changed = nncf_bias_correct(model, calib, "cnn", float_nodes=["conv1"])
    after = _biases(model)
    assert changed >= 2 and not np.array_equal(after["b2"], before["b2"])
    assert np.array_equal(after["b1"], before["b1"])  # kept float: ORT will not quantize it, nothing to correct
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def test_bias_corrected_ort_int8_is_int8_with_other_biases(tmp_path: Path, calib: CalibrationSet):
    src = _tiny_cnn(tmp_path / "f.onnx")

    def int8(bias_correction: bool) -> tuple[Path, str]:
        dst = tmp_path / f"int8_{bias_correction}.onnx"
        q = quantize_onnx(src, dst, calib, "cnn", OrtQuantConfig(keep_float=(), bias_correction=bias_correction))
        return dst, q.scheme

    (plain, _), (corrected, scheme) = int8(False), int8(True)
    assert "NNCF fast bias correction" in scheme
    assert ort_int8_share(corrected).share >= 0.9
    conv_bias = lambda p: [numpy_helper.to_array(i) for i in onnx.load(str(p)).graph.initializer  # noqa: E731
                           if i.data_type == TensorProto.INT32]
    assert any(not np.array_equal(a, b) for a, b in zip(conv_bias(plain), conv_bias(corrected), strict=True))


def test_mean_minmax_ranges_ignore_one_outlier_image(tmp_path: Path, calib: CalibrationSet):
    src = _tiny_cnn(tmp_path / "f.onnx")
    x = calib.x.copy()
    x[0] *= 50  # one image far outside the others
    outlier = CalibrationSet(x, calib.labels, calib.paths)

    def input_scale(method: str) -> float:
        dst = tmp_path / f"int8_{method}.onnx"
        quantize_onnx(src, dst, outlier, "cnn", OrtQuantConfig(keep_float=(), calib_method=method))
        q = onnx.load(str(dst))
        node = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
        return float(next(numpy_helper.to_array(i) for i in q.graph.initializer if i.name == node.input[1]))

    extreme, mean = input_scale("minmax"), input_scale("mean-minmax")
    assert mean < extreme / 5  # the outlier sets minmax's range; averaged over 32 images it barely moves it


def test_calibration_default_follows_the_architecture():
    from edgekd.export.ort_quant import KEEP_FLOAT_BY_FAMILY, default_calibration

    assert default_calibration("tf_efficientnet_lite0") == "mean-minmax"  # int8_qat.md: what lets Lite0 pass
    assert default_calibration("vit_tiny_patch16_224") == "minmax"  # mean-minmax failed ViT-T's verify
    assert default_calibration("convnext_femto") == "minmax"
    assert "blocks.0.0/conv_dw" in KEEP_FLOAT_BY_FAMILY["efficientnet"]
