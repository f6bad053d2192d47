"""A new export format is one module: a toy target registered in this file (it "builds" by
copying the FP32 ONNX, an artifact ONNX Runtime loads) shows up in the target and option tables
and in the CLI's flags, and runs through export -> verify -> bench -> report with no change to
the pipeline."""

from __future__ import annotations

import json
import shutil

import pytest

from edgekd.cli import main
from edgekd.errors import EdgeKDError
from edgekd.export.options import Job, check_options, option_table, plan_jobs
from edgekd.export.targets import TARGETS, Option, Target, register_target

TAG = Option("toy_tag", str, "a word the toy target writes into its report note", ("fp32",))


@pytest.fixture
def toy():
    @register_target
    class Toy(Target):
        name = "toy"
        format = "ONNX copy"
        suffix = ".onnx"
        runtime = "onnxruntime"
        precisions = ("fp32",)
        default_precisions = ("fp32",)
        options = (TAG,)

        def build(self, precision: str):
            dst = self.path(precision)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.inputs.onnx.dynamic, dst)
            return self.artifact(precision, path=str(dst), notes=[f"tag {TAG.of(self.inputs.options)}"])

    yield Toy
    del TARGETS[Toy.name]


def test_a_registered_target_is_in_the_tables_and_the_cli(toy, capsys):
    assert plan_jobs("toy", None) == [Job("toy", "fp32")]
    assert plan_jobs("all", None)[-1] == Job("toy", "fp32")  # registration order
    assert option_table()["toy_tag"].targets == ("toy",)
    assert option_table()["calib_size"].targets == ("onnx", "openvino", "tensorrt")  # the built-ins, unchanged
    with pytest.raises(EdgeKDError, match="--toy-tag has no effect here: it applies to target.s. toy"):
        check_options(plan_jobs("onnx", None), {"toy_tag": "x"})
    with pytest.raises(EdgeKDError, match="toy accepts: fp32"):
        plan_jobs("toy", "int8")
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "--toy-tag TOY_TAG" in capsys.readouterr().out


def test_a_registered_target_runs_through_the_pipeline(toy, tmp_path_factory):
    pytest.importorskip("timm")
    from tests.export_fixtures import cached_tiny_run

    run = cached_tiny_run(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "convnext")
    out = tmp_path_factory.mktemp("toy_export")
    rc = main(["export", "--run", str(run), "--target", "toy", "--toy-tag", "hello", "--bench-iters", "3",
               "--drift-images", "0", "--out", str(out)])
    rep = json.loads((out / "report.json").read_text())
    assert rc == 0, rep["artifacts"]
    row = {a["name"]: a for a in rep["artifacts"]}["toy-fp32"]
    assert row["format"] == "ONNX copy" and row["passed"] is True and row["p50_ms"] > 0
    assert row["path"] == str(out / "toy" / "model.fp32.onnx")
    assert [v["n"] for v in rep["verify"]] == [48] and rep["verify"][0]["agreement_pct"] == 100
    assert rep["build"][0]["runtime"] == "onnxruntime" and "toy-fp32: tag hello" in rep["notes"]
    assert "| toy-fp32 | ONNX copy | fp32 |" in (out / "report.md").read_text()


def test_register_refuses_a_bad_declaration():
    class Base(Target):
        format, suffix, runtime, precisions, default_precisions = "x", ".onnx", "onnxruntime", ("fp32",), ("fp32",)

    with pytest.raises(ValueError, match="registered twice"):
        register_target(type("Again", (Base,), {"name": "onnx"}))
    with pytest.raises(ValueError, match="default precisions"):
        register_target(type("Wrong", (Base,), {"name": "wrong", "default_precisions": ("int8",)}))
    with pytest.raises(ValueError, match="second option named 'calib_size'"):
        register_target(type("Twin", (Base,), {"name": "twin", "options": (Option("calib_size", int, "again"),)}))
    assert set(TARGETS) == {"onnx", "openvino", "tensorrt"}
