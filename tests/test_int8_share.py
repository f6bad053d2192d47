"""The INT8 share is read from what the runtime runs, by MACs, and labels the report.

A hand-built model whose MACs are known exactly (a 5x5 conv, a grouped 3x3 conv, a Gemm
head), quantized by ONNX Runtime and by NNCF, fully and with the biggest op kept float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekd.export.int8_accuracy import QuantReport  # noqa: E402
from edgekd.export.int8_share import Int8Share, int8_label, ort_int8_share  # noqa: E402
from edgekd.export.report import ReportRow, markdown_table, quant_note  # noqa: E402

SIZE, C, GROUPS = 16, 8, 4
CONV_MACS = SIZE * SIZE * C * 3 * 5 * 5  # each of the C x 16 x 16 outputs sums 3 channels x 5 x 5
GROUP_MACS = SIZE * SIZE * C * (C // GROUPS) * 3 * 3  # each output sums the C / GROUPS channels of its group x 3 x 3
GEMM_MACS = C * SIZE * SIZE * 10
TOTAL = CONV_MACS + GROUP_MACS + GEMM_MACS


def tensor(name: str, *shape: int | str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def save(path: Path, nodes: list, inputs: list, outputs: list, inits: list, contrib: bool = False) -> Path:
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    model = helper.make_model(helper.make_graph(nodes, path.stem, inputs, outputs, inits), opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def calibration(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(1, 3, SIZE, SIZE)).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """x -> conv 5x5 (3->8) -> relu -> conv 3x3 in 4 groups -> flatten -> gemm (2048->10), dynamic batch.
    Groups of 2 channels, not depthwise: a per-group weight dim of 1 would hide a miscounted group.
    No relu before the head: its signed input makes OpenVINO run it as i8, the convs as u8."""
    rng = np.random.default_rng(0)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.1, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv", pads=[2, 2, 2, 2], kernel_shape=[5, 5]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="grouped", pads=[1, 1, 1, 1], kernel_shape=[3, 3],
                         group=GROUPS),
        helper.make_node("Flatten", ["c2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="head"),
    ]
    inits = [init("w1", C, 3, 5, 5), init("b1", C), init("w2", C, C // GROUPS, 3, 3), init("b2", C),
             init("w3", C * SIZE * SIZE, 10), init("b3", 10)]
    path = tmp_path_factory.mktemp("int8_share") / "tiny.onnx"
    return save(path, nodes, [tensor("x", "batch", 3, SIZE, SIZE)], [tensor("y", "batch", 10)], inits)


def ort_quantized(src: Path, dst: Path, fmt: str, exclude: list[str]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter({"x": x} for x in calibration())

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    quant_format = QuantFormat.QOperator if fmt == "qoperator" else QuantFormat.QDQ
    quantize_static(str(src), str(dst), Reader(), quant_format=quant_format,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_exclude=exclude)
    return dst


def test_ort_share_by_macs_of_the_executed_kernels(tiny, tmp_path):
    fp32 = ort_int8_share(tiny)
    assert (fp32.int8_macs, fp32.float_macs, fp32.share) == (0, TOTAL, 0.0)
    full = ort_int8_share(ort_quantized(tiny, tmp_path / "full.onnx", "qoperator", []))
    assert (full.int8_macs, full.float_macs, full.share) == (TOTAL, 0, 1.0)
    assert full.by_op == {"QLinearConv": CONV_MACS + GROUP_MACS, "QGemm": GEMM_MACS}
    part = ort_int8_share(ort_quantized(tiny, tmp_path / "part.onnx", "qoperator", ["conv"]))
    assert (part.int8_macs, part.float_macs) == (GROUP_MACS + GEMM_MACS, CONV_MACS)
    assert part.share == pytest.approx((GROUP_MACS + GEMM_MACS) / TOTAL) and part.float_fallback  # 27 %: below half


def test_ort_share_reads_the_runtime_graph_not_the_file(tiny, tmp_path):
    """A QDQ file holds float Conv/Gemm between Q/DQ pairs; ONNX Runtime runs them as QLinearConv/QGemm.
    INT8 weights alone (DequantizeLinear -> Conv, float activations) still run a float Conv."""
    qdq = ort_quantized(tiny, tmp_path / "qdq.onnx", "qdq", [])
    assert {"Conv", "Gemm"} <= {n.op_type for n in onnx.load(str(qdq)).graph.node}
    assert ort_int8_share(qdq).share == 1.0

    inits = [numpy_helper.from_array(np.ones((C, 3, 5, 5), np.int8), "wq"),
             numpy_helper.from_array(np.array(0.01, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"], name="dq"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[2, 2, 2, 2], kernel_shape=[5, 5])]
    weight_only = save(tmp_path / "weight_only.onnx", nodes, [tensor("x", "batch", 3, SIZE, SIZE)],
                       [tensor("y", "batch", C, SIZE, SIZE)], inits)
    assert ort_int8_share(weight_only).by_op == {"Conv": CONV_MACS}


def test_ort_attention_core_stays_float_under_qattention(tmp_path):
    """Dynamic quantization turns Attention into QAttention: its q/k/v projection runs in INT8,
    softmax(QK^T)V in float, and both count."""
    from onnxruntime.quantization import quantize_dynamic

    seq, hidden = 8, 32
    node = helper.make_node("Attention", ["x", "w", "b"], ["y"], name="attn", domain="com.microsoft", num_heads=2)
    inits = [numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.1, (hidden, 3 * hidden)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(3 * hidden, np.float32), "b")]
    fp32 = save(tmp_path / "attn.onnx", [node], [tensor("x", "batch", seq, hidden)], [tensor("y", "batch", seq, hidden)],
                inits, contrib=True)
    quantize_dynamic(str(fp32), str(tmp_path / "attn.int8.onnx"))
    projection, core = seq * hidden * 3 * hidden, 2 * seq * seq * hidden
    assert ort_int8_share(fp32).by_op == {"Attention": projection, "Attention softmax(QK)V": core}
    q = ort_int8_share(tmp_path / "attn.int8.onnx")
    assert (q.int8_macs, q.float_macs) == (projection, core)


def test_openvino_share_from_runtime_precisions(tiny, tmp_path):
    ov = pytest.importorskip("openvino")
    nncf = pytest.importorskip("nncf")
    from edgekd.export.int8_share import openvino_int8_share

    model = ov.convert_model(str(tiny))
    ov.save_model(model, str(tmp_path / "fp32.xml"))
    fp32 = openvino_int8_share(tmp_path / "fp32.xml")
    assert (fp32.int8_macs, fp32.float_macs) == (0, TOTAL)
    conv = next(op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "Convolution")
    for name, ignored, int8 in (("full", None, TOTAL), ("part", nncf.IgnoredScope(names=[conv]), GROUP_MACS + GEMM_MACS)):
        kwargs = {"ignored_scope": ignored} if ignored else {}
        q = nncf.quantize(model.clone(), nncf.Dataset(calibration()), subset_size=4, fast_bias_correction=True, **kwargs)
        ov.save_model(q, str(tmp_path / f"{name}.xml"))
        share = openvino_int8_share(tmp_path / f"{name}.xml")
        assert (share.int8_macs, share.float_macs) == (int8, TOTAL - int8), (name, share)


def test_labels_and_float_fallback_verdict():
    assert int8_label(0.946) == "int8 (94 %)" and int8_label(0.999) == "int8 (99 %)" and int8_label(1.0) == "int8 (100 %)"
    rows = [ReportRow("onnx-int8", "ONNX", "int8", passed=True, int8_share=0.49),
            ReportRow("openvino-int8", "OpenVINO IR", "int8", passed=True, int8_share=0.5),
            ReportRow("onnx-fp32", "ONNX", "fp32", passed=True)]
    lines = markdown_table(rows).split("\n")
    assert lines[2].startswith("| onnx-int8 | ONNX | int8 (49 %) |") and lines[2].endswith("| FLOAT FALLBACK (PASS) |")
    assert lines[3].startswith("| openvino-int8 | OpenVINO IR | int8 (50 %) |") and lines[3].endswith("| PASS |")
    assert lines[4].startswith("| onnx-fp32 | ONNX | fp32 |")


def test_quant_note_flags_float_fallback_for_either_runtime():
    for runtime in ("onnxruntime", "openvino"):
        low = QuantReport("scheme", 4, [], int8_share=Int8Share(41, 59, runtime, {"Conv": 59, "QLinearConv": 41}))
        note = quant_note(low)
        assert note.startswith(f"FLOAT FALLBACK: {runtime} runs only 41 % of the Conv/MatMul/Gemm compute"), note
        assert "INT8 kernels run 41 % of the 0.0001 M Conv/MatMul/Gemm MACs" in note
        high = QuantReport("scheme", 4, [], int8_share=Int8Share(94, 6, runtime, {"QLinearConv": 94, "Conv": 6}))
        assert "FLOAT FALLBACK" not in quant_note(high) and "INT8 kernels run 94 %" in quant_note(high)
