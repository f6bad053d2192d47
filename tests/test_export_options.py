"""The option table: nonsense is refused before any work, with the reason and the fix."""

import pytest

from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.export import bench
from edgekd.export.options import Job, check_options, plan_jobs
from edgekd.export.targets import TARGETS


@pytest.fixture(autouse=True)
def _cpu_without_bf16(monkeypatch):
    """The plans below are those of a CPU without BF16 (tests/test_pick.py plans on one with it)."""
    monkeypatch.setattr(bench, "cpu_info", lambda: {"isa": {}})


def test_all_expands_to_every_target_default():
    names = [j.name for j in plan_jobs("all", None)]
    assert names == ["onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-fp16", "openvino-int8", "tensorrt-fp16", "tensorrt-int8"]


def test_precision_all_and_filter():
    assert [j.precision for j in plan_jobs("openvino", "all")] == ["fp32", "fp16", "bf16", "int8"]
    assert [j.name for j in plan_jobs("all", "int8")] == ["onnx-int8", "openvino-int8", "tensorrt-int8"]
    assert plan_jobs("tensorrt", "fp32") == [Job("tensorrt", "fp32")]


def test_onnx_fp16_is_refused_with_reason_and_alternative():
    with pytest.raises(EdgeKDError) as e:
        plan_jobs("onnx", "fp16")
    msg = str(e.value)
    assert "no fp16 kernels" in msg and "--target openvino --precision fp16" in msg and "fp32, int8" in msg


@pytest.mark.parametrize("target,precision", [("onnx", "bf16"), ("coreml", "fp32"), ("openvino", "int4")])
def test_unknown_values(target, precision):
    with pytest.raises(EdgeKDError):
        plan_jobs(target, precision)


def test_int8_only_flags_refused_without_int8():
    jobs = plan_jobs("openvino", "fp16")
    with pytest.raises(EdgeKDError, match="--calib-size has no effect"):
        check_options(jobs, {"calib_size": 100})
    with pytest.raises(EdgeKDError, match="--quant-format has no effect"):
        check_options(plan_jobs("openvino", "int8"), {"quant_format": "qdq"})
    with pytest.raises(EdgeKDError, match="--max-batch has no effect"):
        check_options(plan_jobs("onnx", None), {"max_batch": 8})
    check_options(plan_jobs("all", None), {"calib_size": 50, "calib_method": "entropy", "max_batch": 8})


def test_bad_profile_and_calib_size():
    with pytest.raises(EdgeKDError, match="min <= opt <= max"):
        check_options(plan_jobs("tensorrt", "fp16"), {"min_batch": 4, "opt_batch": 2, "max_batch": 8})
    with pytest.raises(EdgeKDError, match=">= 1"):
        check_options(plan_jobs("onnx", "int8"), {"calib_size": 0})


def test_every_target_declares_defaults_within_its_precisions():
    for spec in TARGETS.values():
        assert set(spec.default_precisions) <= set(spec.precisions)


def test_cli_refuses_before_any_work(tmp_path, capsys):
    # the run dir does not even exist: the option check must come first
    assert main(["export", "--run", str(tmp_path / "nope"), "--target", "onnx", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "makes no sense" in err and "Traceback" not in err
    assert main(["export", "--run", str(tmp_path / "nope"), "--target", "onnx", "--precision", "fp32", "--calib-size", "10"]) == 2
    assert main(["export", "--run", str(tmp_path / "nope"), "--target", "onnx"]) == 2  # then: missing run dir
    assert "no such run directory" in capsys.readouterr().err


def test_target_comma_list():
    assert [j.name for j in plan_jobs("onnx,openvino", None)] == ["onnx-fp32", "onnx-int8", "openvino-fp32",
                                                                   "openvino-fp16", "openvino-int8"]
    assert [j.name for j in plan_jobs(" openvino , onnx ", "int8")] == ["onnx-int8", "openvino-int8"]
    with pytest.raises(EdgeKDError, match="unknown --target 'onxx'"):
        plan_jobs("onnx,onxx", None)
    with pytest.raises(EdgeKDError, match="makes no sense"):
        plan_jobs("openvino,onnx", "fp16")  # onnx refuses fp16 even inside a list
    with pytest.raises(EdgeKDError, match="--quant-format has no effect"):
        check_options(plan_jobs("openvino,tensorrt", "int8"), {"quant_format": "qdq"})


def test_ort_quantizer_flags_are_refused_where_nncf_makes_the_ort_int8():
    """EfficientNet's ONNX Runtime INT8 is NNCF's Q/DQ: --quant-format/--calib-method would be ignored, so they ask
    for --quantizer ort; with it (or for another family) they apply."""
    from edgekd.export.targets.onnx import cpu_quant_config

    with pytest.raises(EdgeKDError, match="--quant-format.*fix: add --quantizer ort"):
        cpu_quant_config({"quant_format": "qdq_s8s8"}, "tf_efficientnet_lite0")
    cfg = cpu_quant_config({"quant_format": "qdq_s8s8", "quantizer": "ort"}, "tf_efficientnet_lite0")
    assert cfg.quant_format == "qdq_s8s8" and cfg.resolved_quantizer("tf_efficientnet_lite0") == "ort"
    assert cpu_quant_config({"calib_method": "entropy"}, "convnext_femto").calib_method == "entropy"
    assert cpu_quant_config({}, "tf_efficientnet_lite0").resolved_quantizer("tf_efficientnet_lite0") == "nncf"
