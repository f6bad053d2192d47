"""The deployment pick: the fastest candidate that passed verify (the per-class gate included), is
published and is no FLOAT FALLBACK INT8 wins; OUT/deploy/ holds it; `edgekd bench --pick` re-picks
torch-free on another box; BF16 is planned only where the CPU computes it; an FP16 IR's row says
what ran."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgekd.export import bench
from edgekd.export.artifacts import artifact_files
from edgekd.export.options import plan_jobs
from edgekd.export.pick import Candidate, choose, no_pick, slower_int8
from edgekd.export.publish import DEPLOY, MARKER_SUFFIX, deploy, read_verification
from edgekd.export.runtimes import precision_label, ran_as
from edgekd.export.verify import Thresholds, limits

CPU = "Test CPU"


def _c(name: str, p50: float | None, verdict: str = "pass", share: float | None = None, gated: bool = True) -> Candidate:
    target, precision = name.split("-")
    return Candidate(name, f"/x/{name}", {"onnx": "onnxruntime"}.get(target, target), precision, p50, verdict, gated,
                     share)


def test_fastest_passing_candidate_wins_and_says_why():
    cands = [_c("onnx-fp32", 1.0), _c("openvino-fp32", 1.6), _c("openvino-int8", 0.5, share=0.94),
             _c("openvino-bf16", 0.3, verdict="fail"),  # faster, failed verify
             _c("onnx-int8", 0.2, share=0.0),  # fastest, but a float model in an INT8 file
             _c("openvino-fp16", 0.1, verdict="unverified", gated=False)]  # fastest of all, exported with --no-verify
    p = choose(cands, CPU, eager_p50_ms=2.0)
    assert p.name == "openvino-int8" and p.p50_ms == 0.5 and p.precision == "int8 (94 %)"
    assert p.runner_up == "onnx-fp32" and p.speedup_vs_runner_up == pytest.approx(2.0)
    assert p.runtime_fp32 == "openvino-fp32" and p.speedup_vs_fp32 == pytest.approx(3.2)
    assert p.speedup_vs_eager == pytest.approx(4.0)
    assert p.why == ("openvino-int8 [int8 (94 %)]: 4.0x PyTorch eager, 2.0x faster than the next passing candidate "
                     "(onnx-fp32), 3.2x its runtime's FP32 (openvino-fp32) on this CPU (Test CPU), passes verify and "
                     "the per-class gate")
    assert "FLOAT FALLBACK" in p.passed_over["onnx-int8"] and p.passed_over["openvino-bf16"] == "verify verdict: fail"
    assert p.passed_over["openvino-fp16"] == "verify verdict: unverified"
    assert p.passed_over["onnx-fp32"].startswith("slower")
    assert json.loads(json.dumps(p.to_dict()))["name"] == "openvino-int8"


def test_no_pick_when_nothing_qualifies():
    cands = [_c("onnx-int8", 0.2, share=0.1), _c("onnx-fp32", 1.0, verdict="fail"), _c("openvino-fp32", None)]
    assert choose(cands, CPU) is None
    why = no_pick(cands)
    assert "FLOAT FALLBACK" in why and "verify verdict: fail" in why and "not timed" in why


def test_int8_slower_than_its_runtimes_fp32_says_so():
    notes = slower_int8([_c("onnx-fp32", 0.95), _c("onnx-int8", 1.2, share=0.9), _c("openvino-fp32", 1.08),
                         _c("openvino-int8", 0.83, share=0.95)])
    assert list(notes) == ["onnx-int8"] and "slower than onnx-fp32" in notes["onnx-int8"]


def test_deploy_without_a_pick_removes_the_previous_one(tmp_path):
    (tmp_path / DEPLOY).mkdir()
    (tmp_path / DEPLOY / "model.int8.xml").write_text("stale")
    assert deploy(tmp_path, None, tmp_path / "model.json", "") is None
    assert not (tmp_path / DEPLOY).exists()


@pytest.mark.parametrize("flag,planned", [(None, False), ("avx512_bf16", True), ("amx_bf16", True),
                                          ("avx512_vnni", False)])
def test_bf16_is_planned_only_where_the_cpu_computes_it(monkeypatch, flag, planned):
    isa = {k: k == flag for k in bench.ISA_FLAGS}
    monkeypatch.setattr(bench, "cpu_info", lambda: {"cpu_model": CPU, "isa": isa})
    assert bench.runs_bf16(isa) is planned
    assert ("openvino-bf16" in [j.name for j in plan_jobs("all", None)]) is planned
    assert ("bf16" in [j.precision for j in plan_jobs("openvino", None)]) is planned
    assert [j.name for j in plan_jobs("openvino", "bf16")] == ["openvino-bf16"]  # asked for: always built


def test_bf16_thresholds_sit_between_fp16_and_int8():
    t = Thresholds()
    (d16, a16), (db, ab), (d8, a8) = limits(t, "fp16"), limits(t, "bf16"), limits(t, "int8")
    assert d16 <= db < d8 and a16 >= ab > a8


def test_the_precision_that_ran_is_named_and_verified():
    assert precision_label("fp16", runs="fp32") == "fp16 (runs fp32)"
    assert precision_label("bf16", runs="bf16") == "bf16" and precision_label("fp32") == "fp32"
    assert precision_label("int8", 0.94, runs="fp32") == "int8 (94 %)"
    assert ran_as("fp16", "fp32") == "fp32" and ran_as("fp16", None) == "fp16" and ran_as("int8", "fp32") == "int8"


# --- on a real export ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("timm")
    from tests.export_fixtures import cached_export_all

    run, out, _ = cached_export_all(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "vit")
    return run, out


def _resolved_f16_hint(xml: Path) -> str:
    """What this CPU's OpenVINO resolves an f16 hint to, asked directly."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f16"})
    return {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}[compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()]


def _eligible(p50: dict[str, float], paths: dict[str, str]) -> dict[str, float]:
    """The timed candidates the pick may choose from: no FLOAT FALLBACK (the marker's INT8 share)."""
    shares = {n: read_verification(paths[n]).int8_share for n in p50}
    return {n: t for n, t in p50.items() if shares[n] is None or shares[n] >= 0.5}


def test_export_leads_with_the_pick_and_deploys_it(exported):
    run, out = exported
    report = json.loads((out / "report.json").read_text())
    pick, rows = report["pick"], {r["name"]: r for r in report["artifacts"]}
    passed = {n: r["p50_ms"] for n, r in rows.items() if r["passed"] and r["p50_ms"] is not None}
    eligible = _eligible(passed, {n: rows[n]["path"] for n in passed})
    assert pick["name"] == min(eligible, key=eligible.get)
    assert (out / "report.md").read_text().split("\n")[2] == f"**Deployment pick**: {pick['why']}"
    art = Path(report["deploy"])
    assert art == out / DEPLOY / Path(pick["path"]).name
    expected = {f.name for f in artifact_files(Path(pick["path"]))} | {art.name + MARKER_SUFFIX, "model.json", "DEPLOY.md"}
    assert {p.name for p in (out / DEPLOY).iterdir()} == expected
    assert read_verification(art).verdict == "pass"  # the copied marker still matches the copied files
    readme = (out / DEPLOY / "DEPLOY.md").read_text()
    assert pick["why"] in readme and "edgekd bench --pick EXPORT_DIR" in readme and report["machine"]["cpu_model"] in readme
    assert rows["openvino-fp16"]["runs"] == _resolved_f16_hint(out / "openvino" / "model.fp16.xml")
    for name in ("onnx-int8", "openvino-int8"):
        assert read_verification(rows[name]["path"]).int8_share == pytest.approx(rows[name]["int8_share"])


def test_bench_pick_is_torch_free_and_skips_what_did_not_pass(exported, tmp_path):
    from tests.test_export_runtime_only import _run_blocked

    _, out = exported
    export = tmp_path / "export"
    shutil.copytree(out, export)
    passing = {v.artifact for m in export.glob(f"*/*{MARKER_SUFFIX}") if m.parent.name != DEPLOY
               and (v := read_verification(str(m)[: -len(MARKER_SUFFIX)])) and v.verdict == "pass"}
    marker = export / "onnx" / f"model.onnx{MARKER_SUFFIX}"  # a candidate that failed verify
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "verdict": "fail", "reasons": ["test"]}))
    (export / "openvino" / "model.fp16.bin").write_bytes(b"changed since verify")
    r = _run_blocked(f"""
        from edgekd.cli import main
        rc = main(["bench", "--pick", {str(export)!r}, "--iters", "5", "--warmup", "1"])
        assert rc == 0, rc
    """)
    assert r.returncode == 0 and "NO_TORCH_OK" in r.stdout, r.stderr[-3000:]
    (js,) = export.glob("bench-*.json")  # bench-<hostname>.json
    d = json.loads(js.read_text())
    p50 = {x["name"]: x["p50_ms"] for x in d["results"]}
    assert set(p50) == passing - {"onnx-fp32", "openvino-fp16"}
    assert {Path(p).name for p in d["not_timed"]} == {"model.onnx", "model.fp16.xml"}
    eligible = _eligible(p50, {x["name"]: x["details"]["path"] for x in d["results"]})
    assert d["pick"]["name"] == min(eligible, key=eligible.get)
    assert f"deployment pick on this box: {d['headline']}" in r.stdout
    assert d["headline"] in js.with_suffix(".md").read_text()


def test_a_bf16_ir_runs_with_the_bf16_hint(exported, tmp_path):
    import openvino as ov

    from edgekd.export.openvino_export import save_ir
    from edgekd.export.runner import ARTIFACT_PRECISION, RunnerConfig
    from edgekd.export.runtimes import open_runner, openvino_hint

    _, out = exported
    model = ov.Core().read_model(str(out / "openvino" / "model.fp32.xml"))
    xml = save_ir(model, tmp_path / "model.bf16.xml", "bf16")
    assert openvino_hint(ov.Core().read_model(str(xml)), ARTIFACT_PRECISION) == "bf16"
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    asked = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # bf16, or f32 on a CPU without it
    assert open_runner(xml, RunnerConfig(threads=1)).compute_precision == {"bf16": "bf16", "f32": "fp32"}[asked]
    assert open_runner(xml, RunnerConfig(threads=1, inference_precision="f32")).compute_precision == "fp32"
