"""benchmarks/export_cpu.py builds each artifact once: a rerun builds what is missing, what --rebuild
names and what depends on those, and records each step as it finishes (the searches take minutes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load(monkeypatch):
    """benchmarks/export_cpu.py as a module (benchmarks/ is not a package)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("export_cpu_under_test", REPO / "benchmarks" / "export_cpu.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def bench(monkeypatch, tmp_path):
    """export_cpu with three fake steps (a -> b, c) that write their files and count their runs."""
    mod = load(monkeypatch)
    runs: list[str] = []

    def make(key: str):
        def run(b, info):
            runs.append(key)
            b.arts[key].write_text(key)
            return {key: len(runs)}
        return run

    class Inputs:
        def __init__(self, src, calib_size, threads, arts):
            self.arts, self.sets, self.target = arts, ([0] * 3, [0] * 2), "goal"

    steps = [mod.BuildStep(("a",), make("a")), mod.BuildStep(("b",), make("b"), needs=("a",)),
             mod.BuildStep(("c",), make("c"))]
    arts = {k: tmp_path / "bench_export" / f"{k}.bin" for k in "abc"}
    monkeypatch.setattr(mod, "build_steps", lambda: steps)
    monkeypatch.setattr(mod, "BuildInputs", Inputs)
    monkeypatch.setattr(mod, "artifact_paths", lambda out, arch: arts)
    monkeypatch.setitem(sys.modules, "edgekd.export.source", type(sys)("stub"))
    sys.modules["edgekd.export.source"].resolve_run = lambda run: type("Src", (), {"architecture": "x"})
    (tmp_path / "bench_export").mkdir()
    return mod, tmp_path, runs, arts


def test_cached_steps_do_not_run_again(bench):
    mod, run, runs, arts = bench
    _, info = mod.build_artifacts(run, 3, 1)
    assert runs == ["a", "b", "c"] and info["calib_images"] == 3 and info["target"] == "goal"
    assert json.loads((run / "bench_export" / "build.json").read_text())["c"] == 3
    mod.build_artifacts(run, 3, 1)
    assert runs == ["a", "b", "c"]  # all cached


def test_a_missing_artifact_is_built_alone(bench):
    mod, run, runs, arts = bench
    mod.build_artifacts(run, 3, 1)
    arts["c"].unlink()
    mod.build_artifacts(run, 3, 1)
    assert runs == ["a", "b", "c", "c"]


def test_rebuild_reruns_the_step_and_what_needs_it(bench):
    mod, run, runs, arts = bench
    mod.build_artifacts(run, 3, 1)
    _, info = mod.build_artifacts(run, 3, 1, rebuild=("a",))
    assert runs == ["a", "b", "c", "a", "b"]
    assert info["a"] == 4 and info["b"] == 5 and info["c"] == 3  # the record keeps the untouched step's entry


def test_rebuild_names_one_model_or_all(monkeypatch):
    mod = load(monkeypatch)
    a = mod.parse(["--rebuild", "Lite0-224:ort_int8,ov_int8"])
    assert mod.rebuild_keys(a, "Lite0-224") == ("ort_int8", "ov_int8")
    assert mod.rebuild_keys(a, "ViT-T") == ("ov_int8",)


def test_the_pick_is_among_the_default_forms_only(monkeypatch):
    """A faster alternative form (here a ViT ORT INT8 with attention float) is measured beside the default
    but never the pick: `edgekd export` with its defaults would not build it."""
    from pathlib import Path

    mod = load(monkeypatch)
    arts = {k: Path(f"/x/{k}") for k in ("onnx", "onnx_b1", "ort_int8", "ort_s8s8", "ort_mean_minmax", "ov_fp32",
                                        "ov_int8", "ort_int8_attention_float", "ov_int8_attention_float")}
    specs = mod.row_specs(arts)
    alternatives = {s.name for s in specs if s.alternative}
    assert alternatives == {"ort-int8-s8s8", "ort-int8-mean-minmax", "ort-int8-attention-float", "ov-int8-attention-float"}

    def row(spec, ms):
        return mod.Row(model="m", label="m", input_px=8, name=spec.name, backend=spec.backend, precision=spec.precision,
                       precision_label=spec.precision, runs="fp32", verified_as=spec.precision,
                       device_default=spec.hint is None, alternative=spec.alternative, config="", isa="", p50_ms=ms,
                       p50_ms_rounds=[ms], speedup_vs_torch=1.0, vs_runtime_fp32=1.0, verdict="PASS", passes_verify=True,
                       gate="pass", int8_share=1.0 if spec.precision == "int8" else None, int8_kernels=None,
                       accuracy=1.0, accuracy_drop=0.0, agreement=100.0, max_abs_diff=0.0, cosine=1.0, size_mb=1.0,
                       path=f"/x/{spec.name}", test_images=1, training="")

    rows = [row(s, 1.0 if s.alternative else 2.0 + i) for i, s in enumerate(specs)]
    names = {c.name for c in mod.candidates(rows)}
    assert names and not names & alternatives
    assert alternatives <= {c.name for c in mod.candidates(rows, alternatives=True)}


def test_a_pick_under_the_target_says_what_bounds_it_from_the_profile(monkeypatch):
    """Issue 18: a pick under 4x eager comes with what bounds it, read from int8_profile's record of this CPU."""
    from types import SimpleNamespace

    mod = load(monkeypatch)
    m = SimpleNamespace(label="ViT-T", pick=SimpleNamespace(runtime="openvino"))
    profile = {"machine": {"isa": {"avx512_vnni": True, "amx_int8": False}},
               "rows": [{"model": "ViT-T", "runtime": "onnxruntime", "int8_share_pct": 32.4},
                        {"model": "ViT-T", "runtime": "openvino", "int8_share_pct": 85.6}]}
    said = mod.what_bounds(m, profile)
    assert "85.6 % of its time in INT8 kernels. Bound by its INT8 kernels" in said, said
    assert "no int8_profile record of this CPU has this artifact" in mod.what_bounds(m, None)
