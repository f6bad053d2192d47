"""`edgekd export --target all` on tiny trained ViT / ConvNeXt runs: every CPU artifact built,
verified with real numbers on the test split, metadata inside, report written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekd.cli import main

pytest.importorskip("timm")
from tests.export_fixtures import cached_export_all  # noqa: E402

FAMILIES = ["vit", "convnext"]


@pytest.fixture(scope="module", params=FAMILIES)
def export(request, tmp_path_factory):
    run, out, rc = cached_export_all(tmp_path_factory.getbasetemp() / "edgekd_export_cache", request.param)
    report = json.loads((out / "report.json").read_text())
    return run, out, rc, report


def test_export_all_builds_and_passes(export):
    run, out, rc, report = export
    assert rc == 0, [a for a in report["artifacts"] if a["passed"] is False or a["status"] == "failed"]
    by = {a["name"]: a for a in report["artifacts"]}
    for name in ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-fp16", "openvino-int8"):
        assert by[name]["status"] == "ok" and by[name]["passed"] is True, by[name]
    for f in ("onnx/model.onnx", "onnx/model.b1.onnx", "onnx/model.int8.onnx", "openvino/model.fp32.xml",
              "openvino/model.fp32.bin", "openvino/model.fp16.xml", "openvino/model.int8.xml",
              "tensorrt/model.int8.qdq.onnx", "tensorrt/model.fp16.onnx", "report.md", "report.json", "report.png",
              "report.html"):
        assert (out / f).exists(), f


def test_verify_numbers_are_real(export):
    _, _, _, report = export
    v = {r["name"]: r for r in report["verify"]}
    assert all(r["n"] == 48 for r in v.values())  # 4 classes x 12, batches of 10: last one partial
    ref = v["onnx-fp32"]["reference_accuracy"]
    assert ref > 60  # the tiny model learned something: comparisons are not on degenerate outputs
    for name in ("onnx-fp32", "openvino-fp32"):
        assert v[name]["agreement_pct"] == 100 and v[name]["max_abs_diff"] < 1e-4 and v[name]["mean_kl"] < 1e-8
    assert v["openvino-fp16"]["max_abs_diff"] < 5e-2
    for name in ("onnx-int8", "openvino-int8"):
        assert 0 < v[name]["max_abs_diff"] < 5  # really quantized, still close
        assert v[name]["agreement_pct"] >= 98 and v[name]["mean_cosine"] > 0.98
    # file sizes: int8 much smaller, fp16 IR about half
    size = {a["name"]: a["size_mb"] for a in report["artifacts"]}
    assert size["onnx-int8"] < 0.5 * size["onnx-fp32"]
    assert size["openvino-fp16"] < 0.6 * size["openvino-fp32"]


def test_tensorrt_built_where_possible_else_skipped_with_reason(export):
    """On CI (no GPU) the engines are skipped with the reason and the ONNX to ship; on a GPU box
    with TensorRT they are built and must pass verify like every other artifact."""
    from edgekd.export.tensorrt_export import tensorrt_unavailable_reason

    _, out, _, report = export
    by = {a["name"]: a for a in report["artifacts"]}
    reason = tensorrt_unavailable_reason()
    for p, shipped in (("fp16", "model.fp16.onnx"), ("int8", "model.int8.qdq.onnx")):
        row = by[f"tensorrt-{p}"]
        assert (out / "tensorrt" / shipped).exists()
        if reason is None:
            assert row["status"] == "ok" and row["passed"] is True, row
        else:
            assert row["status"] == "skipped" and "--build-on-device" in row["reasons"][0], row
            assert f"--onnx {shipped} --precision {p}" in row["reasons"][0]
    md = (out / "report.md").read_text()
    assert "| onnx-int8 |" in md and "PASS" in md


def test_onnx_metadata_and_structure(export):
    import onnx

    run, out, _, _ = export
    side = json.loads((run / "model.json").read_text())
    for f, prec in (("model.onnx", "fp32"), ("model.b1.onnx", "fp32"), ("model.int8.onnx", "int8")):
        m = onnx.load(str(out / "onnx" / f))
        onnx.checker.check_model(m)
        props = {p.key: json.loads(p.value) for p in m.metadata_props if p.key.startswith("edgekd.")}
        assert props["edgekd.classes"] == side["classes"]
        assert props["edgekd.input_size"] == side["preprocess"]["input_size"]
        assert props["edgekd.mean"] == side["preprocess"]["mean"] and props["edgekd.std"] == side["preprocess"]["std"]
        assert props["edgekd.interpolation"] == "bicubic"
        assert props["edgekd.weights_sha256"] == side["weights_sha256"] and len(side["weights_sha256"]) == 64
        assert props["edgekd.edgekd_version"] == __import__("edgekd").__version__
        assert props["edgekd.precision"] == prec
        assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dyn = onnx.load(str(out / "onnx" / "model.onnx")).graph.input[0].type.tensor_type.shape.dim[0]
    b1 = onnx.load(str(out / "onnx" / "model.b1.onnx")).graph.input[0].type.tensor_type.shape.dim[0]
    assert dyn.dim_param and b1.dim_value == 1
    ops = {n.op_type for n in onnx.load(str(out / "onnx" / "model.int8.onnx")).graph.node}
    assert ops & {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger"}  # QOperator U8S8
    assert "LayerNormalization" in ops  # kept float for both ViT and ConvNeXt


def test_openvino_metadata(export):
    from edgekd.export.metadata import read_metadata

    run, out, _, _ = export
    side = json.loads((run / "model.json").read_text())
    for prec in ("fp32", "fp16", "int8"):
        md = read_metadata(out / "openvino" / f"model.{prec}.xml")
        assert md["classes"] == side["classes"] and md["precision"] == prec
        assert md["input_size"] == side["preprocess"]["input_size"] and md["weights_sha256"] == side["weights_sha256"]


def test_qdq_onnx_for_tensorrt_has_symmetric_pairs(export):
    import onnx
    from onnx import numpy_helper

    from edgekd.export.ort_quant import count_qdq_pairs

    _, out, _, _ = export
    path = out / "tensorrt" / "model.int8.qdq.onnx"
    q, dq = count_qdq_pairs(path)
    assert q > 0 and dq == q  # every quantized tensor (weights too) is a Q->DQ pair
    m = onnx.load(str(path))
    inits = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            zp = numpy_helper.to_array(inits[n.input[2]])
            assert zp.dtype == np.int8 and not zp.any()  # TensorRT: symmetric int8, zero point 0


def test_verify_cli_round_trip_and_partial_batch(export, tmp_path):
    run, out, _, _ = export
    rc = main(["verify", "--run", str(run), str(out / "onnx" / "model.b1.onnx"), str(out / "openvino" / "model.int8.xml"),
               "--batch-size", "7", "--json", str(tmp_path / "v.json")])
    assert rc == 0
    res = json.loads((tmp_path / "v.json").read_text())
    assert [r["n"] for r in res] == [48, 48]  # static batch-1 ONNX fed batches of 7 (+ partial 6)


def test_predict_uses_artifact_metadata(export):
    from edgekd.export.predict import Classifier

    run, out, _, _ = export
    from edgekd.data import Manifest

    items = Manifest.load(run / "data" / "test.json").items[:6]
    clf = Classifier(out / "openvino" / "model.fp32.xml")
    res = clf.predict_paths([p for p, _ in items], batch_size=4, top_k=2).results
    assert [r["class"] for r in res] and all(0 < r["prob"] <= 1 and len(r["top"]) == 2 for r in res)
    assert all(r["class"] in clf.classes for r in res)


def test_ort_int8_transformer_fusions_are_opt_in(export):
    """ORT INT8 quantizes the plain graph (measured fastest, export_cpu.md); the transformer
    optimizer's modes stay available, and for ViT `all` fuses attention (export/attention.py
    re-expresses timm's packed qkv so it can). The TensorRT Q/DQ ONNX stays plain ONNX."""
    import onnx

    from edgekd.export.ort_quant import OrtQuantConfig, prepare_float

    run, out, _, report = export
    arch = json.loads((run / "model.json").read_text())["architecture"]
    ops = {n.op_type for n in onnx.load(str(out / "onnx" / "model.int8.onnx")).graph.node}
    note = next(n for n in report["notes"] if n.startswith("onnx-int8:"))
    assert "SkipLayerNormalization" not in ops and "fusions: none" in note
    if "vit" in arch:
        for mode, want in (("all", ["Attention", "BiasGelu", "SkipLayerNormalization"]),
                           ("no-attention", ["BiasGelu", "SkipLayerNormalization"]), ("none", [])):
            fused = prepare_float(out / "onnx" / "model.onnx", out / f"pre.{mode}.onnx", arch,
                                  OrtQuantConfig(transformer_fusions=mode))
            assert sorted(f.split(" x")[0] for f in fused if not f.startswith("LayerNormalization")) == want, fused
        with pytest.raises(ValueError, match="transformer_fusions"):
            prepare_float(out / "onnx" / "model.onnx", out / "pre.bad.onnx", arch, OrtQuantConfig(transformer_fusions="some"))
    qdq_domains = {n.domain for n in onnx.load(str(out / "tensorrt" / "model.int8.qdq.onnx")).graph.node}
    assert qdq_domains <= {"", "ai.onnx"}
