"""Small pieces without any model: calibration subset, runner padding, verify maths, metadata."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgekd.export.calibration import stratified_subset
from edgekd.export.metadata import artifact_metadata, decode, encode, preprocess_dict
from edgekd.export.runner import Runner, RunnerConfig
from edgekd.export.verify import Thresholds, VerifyResult, check, verify


def test_stratified_subset_is_proportional_and_covers_every_class():
    items = [(f"a{i}", 0) for i in range(600)] + [(f"b{i}", 1) for i in range(300)] + [(f"c{i}", 2) for i in range(3)]
    sub = stratified_subset(items, 300, seed=0)
    c = Counter(l for _, l in sub)
    assert len(sub) == 300 and set(c) == {0, 1, 2}
    assert abs(c[0] - 2 * c[1]) <= 2
    assert stratified_subset(items, 300, seed=0) == sub  # deterministic
    assert stratified_subset(items, 5000) == items  # whole split when it is smaller


class _Echo(Runner):
    """Fixed-batch fake: returns the per-image mean as one logit, records the batch sizes it saw."""

    def __init__(self, b):
        super().__init__("fake", RunnerConfig())
        self.fixed_batch, self.seen = b, []

    def _run(self, x):
        assert len(x) == self.fixed_batch
        self.seen.append(len(x))
        return x.reshape(len(x), -1).mean(1, keepdims=True)


def test_fixed_batch_runner_pads_and_drops_the_padding():
    r = _Echo(4)
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) + 1
    out = r.predict(x)
    assert out.shape == (10, 1) and np.allclose(out[:, 0], x.ravel())
    assert r.seen == [4, 4, 4]


class _Const:
    def __init__(self, logits):
        self.logits = logits

    def predict(self, x):
        return self.logits[: len(x)]


def test_verify_metrics_and_thresholds():
    ref = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    flipped = ref.copy()
    flipped[3] = [2.0, 0.0]  # one of four predictions changes, and it was correct
    y = np.array([0, 1, 0, 1])
    batches = [(np.zeros((3, 1)), y[:3]), (np.zeros((1, 1)), y[3:])]  # partial last batch

    class _Seq:
        def __init__(self, z):
            self.z, self.i = z, 0

        def predict(self, x):
            out = self.z[self.i : self.i + len(x)]
            self.i += len(x)
            return out

    res = verify({"same": (_Seq(ref), "fp32"), "flip": (_Seq(flipped), "int8")}, _Seq(np.concatenate([ref, ref])), [
        (x, yy) for x, yy in batches], Thresholds())
    same, flip = res
    assert same.n == 4 and same.agreement_pct == 100 and same.max_abs_diff == 0 and same.passed
    assert flip.accuracy == 75 and flip.drop_pt == 25 and flip.agreement_pct == 75 and flip.mean_kl > 0
    assert not flip.passed and any("drop 25.00 pt > 1 pt" in r for r in flip.reasons)


def test_threshold_overrides():
    t = Thresholds.parse(["int8.drop=2.5", "fp16.agreement=99"])
    assert t.max_drop_pt["int8"] == 2.5 and t.min_agreement_pct["fp16"] == 99 and t.max_drop_pt["fp32"] == 0.1
    r = VerifyResult("x", "fp32", 100, 90.0, 90.2, 0.2, 99.9, 0.0, 0.0, 1.0)
    assert not check(r, Thresholds()).passed and "0.20 pt > 0.1 pt" in r.reasons[0]
    r.drop_pt = -0.5  # better than the reference is fine
    assert check(r, Thresholds()).passed


def test_metadata_encoding_round_trip():
    meta = {"architecture": "convnext_femto", "classes": ["benign", "malignant"], "weights_sha256": "ab" * 32,
            "preprocess": {"input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.25] * 3,
                           "interpolation": "bicubic", "crop_pct": 1.0}}
    from edgekd.shared.card import StudentCard

    md = artifact_metadata(StudentCard(num_classes=2, **meta), "int8")
    assert decode(encode(md)) == md
    assert preprocess_dict(md) == meta["preprocess"]
    assert md["edgekd_version"] == __import__("edgekd").__version__


def test_calibration_batches_have_one_size():
    """Histogram calibrators (entropy/percentile) fail on a short last batch: never make one."""
    from edgekd.export.ort_quant import even_batch

    assert even_batch(300, 16) == 15
    assert even_batch(32, 16) == 16
    assert even_batch(7, 16) == 7
    assert even_batch(13, 4) == 1
    for n in range(1, 60):
        b = even_batch(n, 16)
        assert n % b == 0 and b <= 16


def test_nonfinite_logits_are_a_breach():
    """A NaN row must not count as agreeing (argmax of NaN is 0 == the reference's class 0)."""
    ref = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    y = np.array([0, 1, 0, 0])
    for bad in (np.nan, np.inf):
        out = ref.copy()
        out[0] = [bad, 0.0]
        (r,) = verify({"nan": (_Const(out), "fp32")}, _Const(ref), [(np.zeros((4, 1)), y)], Thresholds(
            max_drop_pt={"fp32": 100.0}, min_agreement_pct={"fp32": 0.0}))
        assert r.nonfinite == 1 and not r.passed and r.agreement_pct == 75 and r.accuracy == 75
        assert any("non-finite logits" in m for m in r.reasons) and r.max_abs_diff == np.inf


def test_unknown_precision_is_an_error():
    from edgekd.errors import EdgeKDError

    ref = np.eye(2)
    with pytest.raises(EdgeKDError, match="no verify thresholds for precision 'int4'"):
        verify({"x": (_Const(ref), "int4")}, _Const(ref), [(np.zeros((2, 1)), np.array([0, 1]))])
    r = VerifyResult("x", "fp8", 100, 90.0, 90.0, 0.0, 100.0, 0.0, 0.0, 1.0)
    with pytest.raises(EdgeKDError, match="--threshold fp8.drop"):
        check(r, Thresholds())
    t = Thresholds.parse(["fp8.drop=0.5", "fp8.agreement=99"])
    assert check(r, t).passed


def test_keep_float_search_schedule():
    from edgekd.export.ort_quant import search_schedule

    assert search_schedule(0) == [] and search_schedule(1) == [1]
    assert search_schedule(10) == [1, 2, 4, 8, 10] and search_schedule(8) == [1, 2, 4, 8]


def test_validation_score_counts_nonfinite_as_disagreeing():
    from edgekd.export.calibration import CalibrationSet
    from edgekd.export.int8_accuracy import AccuracyTarget, ValidationSet, score_logits

    ref = np.array([[2.0, 0.0]] * 3 + [[0.0, 2.0]])
    val = ValidationSet(CalibrationSet(np.zeros((4, 1)), np.array([0, 0, 0, 1]), ["a"] * 4), ref)
    s = score_logits(ref.copy(), val)
    assert s.agreement_pct == 100 and s.drop_pt == 0 and s.meets(AccuracyTarget())
    bad = ref.copy()
    bad[0] = np.nan
    s = score_logits(bad, val)
    assert s.agreement_pct == 75 and s.drop_pt == 25 and not s.meets(AccuracyTarget())
    t = AccuracyTarget.from_thresholds(Thresholds.parse(["int8.agreement=97", "int8.drop=2"]), 2000)
    assert 97.5 < t.min_agreement_pct < 98.0 and t.max_drop_pt == 2 and "on 2000 images" in str(t)


def test_int8_target_lower_bound_clears_the_verify_bar():
    """The validation target is the lowest rate whose 95 % Wilson lower bound clears the bar:
    it rises as the slice shrinks, and one image fewer would not clear it."""
    from edgekd.export.int8_accuracy import AccuracyTarget, required_agreement_pct, wilson_lower

    assert abs(wilson_lower(495, 500) - 0.9796) < 1e-3  # 99.0 % on 500 images does not certify 98 %
    for n in (300, 500, 2000, 5000):
        k = round(required_agreement_pct(98.0, n) * n / 100)
        assert wilson_lower(k, n) >= 0.98 > wilson_lower(k - 1, n), n
    pcts = [AccuracyTarget.from_thresholds(Thresholds(), n).min_agreement_pct for n in (300, 500, 2000, 5000)]
    assert pcts == sorted(pcts, reverse=True) and pcts[0] > 99 and pcts[-1] < 98.5
    assert required_agreement_pct(98.0, 20) == 100.0  # too few images to certify anything: every image must agree


def test_report_plot_labels_do_not_overlap():
    """Artifacts of one model share accuracy and nearly share latency: their names must still be readable."""
    from edgekd.export.report import ReportRow, latency_figure

    rows = [ReportRow(n, "ONNX", "fp32", accuracy=85.8, p50_ms=0.7 + 0.01 * i, speedup_vs_torch=10.0, passed=i != 2)
            for i, n in enumerate(["onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-int8"])]
    fig = latency_figure(rows)
    fig.draw_without_rendering()  # lays the text out
    ax = fig.axes[0]
    labels = ax.get_yticklabels() + ax.texts + ax.get_legend().get_texts()
    assert [t.get_text().split()[0] for t in ax.get_yticklabels()] == [r.name for r in rows]
    boxes = [t.get_window_extent() for t in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_validation_halves_are_disjoint_and_balanced():
    """The INT8 search tunes on one half and is certified on the other, which it never saw; both
    halves keep the class balance even in stratified_subset's order (labels 0,1,2,3,0,1,...)."""
    from edgekd.export.calibration import CalibrationSet, stratified_subset
    from edgekd.export.int8_accuracy import ValidationSet

    items = stratified_subset([(f"img{i}", i % 4) for i in range(400)], 40)
    labels = np.array([label for _, label in items])
    val = ValidationSet(CalibrationSet(np.arange(40.0)[:, None], labels, [p for p, _ in items]), np.eye(4)[labels])
    search, check = val.halves()
    assert len(search) == len(check) == 20 and not set(search.images.paths) & set(check.images.paths)
    assert Counter(search.images.labels) == Counter(check.images.labels) == Counter({c: 5 for c in range(4)})
    assert (search.ref_pred == search.images.labels).all() and (check.ref_pred == check.images.labels).all()


class _OvOp:
    """Just enough of an `openvino` op for the ignored-scope helpers."""

    def __init__(self, kind: str, name: str, inputs: tuple = ()):
        self.kind, self.name, self.inputs = kind, name, inputs

    def get_type_name(self):
        return self.kind

    def get_friendly_name(self):
        return self.name

    def get_input_size(self):
        return len(self.inputs)

    def input_value(self, i):
        return type("Out", (), {"get_node": lambda _self: self.inputs[i]})()


def _ov_kwargs(ops: list, architecture: str, **cfg):
    pytest.importorskip("nncf")
    from edgekd.export.calibration import CalibrationSet
    from edgekd.export.openvino_export import OpenVINOQuantConfig, _nncf_kwargs

    model = type("Model", (), {"get_ops": lambda self: ops})()
    calib = CalibrationSet(np.zeros((2, 3, 8, 8), np.float32), np.array([0, 1]), ["a.png", "b.png"])
    return _nncf_kwargs(model, calib, architecture, OpenVINOQuantConfig(**cfg))


def test_openvino_quantizes_vit_attention_unless_asked_to_keep_it_float():
    """OpenVINO's ViT INT8 default quantizes attention's MatMuls (first-try PTQ at 100 % INT8 on ViT-T,
    export_cpu-intel-...md); keep_activation_matmuls=True keeps them and the fused attention float."""
    q, k = _OvOp("Add", "q"), _OvOp("Add", "k")
    ops = [q, k, _OvOp("MatMul", "attn/MatMul", (q, k))]
    assert "ignored_scope" not in _ov_kwargs(ops, "vit_tiny_patch16_224")
    kept = _ov_kwargs(ops, "vit_tiny_patch16_224", keep_activation_matmuls=True)["ignored_scope"]
    assert kept.names == ["attn/MatMul"] and "ScaledDotProductAttention" in kept.types


def test_openvino_keeps_the_family_layers_float_and_drops_the_overflow_fix_with_vnni(monkeypatch):
    """EfficientNet: the stem and the first depthwise conv stay float in OpenVINO as in ONNX Runtime, and
    NNCF's overflow fix (7-bit first-layer weights) is off where the CPU has VNNI: together they let the
    quickstart student's first plain PTQ pass (benchmarks/results/quickstart_ov_int8.md)."""
    import nncf

    from edgekd.export import openvino_export

    ops = [_OvOp("Convolution", "/model/conv_stem/Conv/WithoutBiases"),
           _OvOp("GroupConvolution", "/model/blocks/blocks.0/blocks.0.0/conv_dw/Conv/WithoutBiases"),
           _OvOp("Convolution", "/model/blocks/blocks.1/blocks.1.0/conv_pw/Conv/WithoutBiases")]
    monkeypatch.setattr(openvino_export, "has_vnni", lambda: True)
    kw = _ov_kwargs(ops, "tf_efficientnet_lite0")
    assert kw["ignored_scope"].names == [ops[0].name, ops[1].name]
    assert kw["advanced_parameters"].overflow_fix == nncf.OverflowFix.DISABLE
    assert "ignored_scope" not in _ov_kwargs(ops, "tf_efficientnet_lite0", keep_float_layers=())
    monkeypatch.setattr(openvino_export, "has_vnni", lambda: False)
    assert "advanced_parameters" not in _ov_kwargs(ops, "tf_efficientnet_lite0")  # NNCF's default fix
    assert "advanced_parameters" in _ov_kwargs(ops, "tf_efficientnet_lite0", overflow_fix=False)


def test_onnx_runtime_quantizes_vit_attention_unless_asked_to_keep_it_float():
    """ORT's ViT INT8 default quantizes attention's activation MatMuls too: with them float ViT-T's search
    stopped at 85 % INT8, under the 90 % bar (export_cpu-intel-...md, ort-int8 vs ort-int8-attention-float);
    `ActivationMatMul` in keep_float keeps them float. LayerNorm and Softmax stay float either way."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from edgekd.export.ort_quant import ACTIVATION_MATMUL, KEEP_FLOAT_BY_FAMILY, OrtQuantConfig, _plan

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [helper.make_node("LayerNormalization", ["x", "g"], ["n"], name="norm1"),
             helper.make_node("MatMul", ["n", "w"], ["q"], name="attn/q"),
             helper.make_node("MatMul", ["q", "n"], ["s"], name="attn/MatMul"),
             helper.make_node("Softmax", ["s"], ["y"], name="attn/Softmax")]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [vi("x", TensorProto.FLOAT, [4, 4])], [vi("y", TensorProto.FLOAT, [4, 4])],
                              [w, numpy_helper.from_array(np.ones(4, np.float32), "g")])
    proto = helper.make_model(graph)
    excluded, kept, _ = _plan(proto, "vit_tiny_patch16_224", OrtQuantConfig())
    assert excluded == ["norm1", "attn/Softmax"] and ACTIVATION_MATMUL not in kept
    keep = KEEP_FLOAT_BY_FAMILY["vit"] + (ACTIVATION_MATMUL,)
    excluded, kept, _ = _plan(proto, "vit_tiny_patch16_224", OrtQuantConfig(keep_float=keep))
    assert excluded == ["norm1", "attn/MatMul", "attn/Softmax"] and ACTIVATION_MATMUL in kept
    assert onnx.checker.check_model(proto) is None


def test_an_onnxslim_graph_that_changes_the_outputs_is_not_kept(tmp_path, monkeypatch):
    """onnxslim's graph replaces the exporter's only where it computes the same outputs: a slim that
    alters a weight (as its constant folding altered a trained 48-px Lite0's logits) leaves the
    exporter's graph in place; a faithful one is kept."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    import onnxslim
    from onnx import numpy_helper

    from edgekd.export import onnx_export

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2)).eval()
    model(torch.zeros(1, 3, 8, 8))
    path = tmp_path / "m.onnx"
    onnx_export._export_one(model, torch.zeros(2, 3, 8, 8), path, 17, dynamic=True)
    exported = onnx.load(str(path))

    slim = onnxslim.slim

    def corrupting_slim(proto):
        out = slim(proto)
        w = out.graph.initializer[0]
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.5, w.name))
        return out

    assert onnx_export.slimmed_if_equal(exported) is not exported  # a faithful slim is kept
    monkeypatch.setattr(onnxslim, "slim", corrupting_slim)
    assert onnx_export.slimmed_if_equal(exported) is exported
