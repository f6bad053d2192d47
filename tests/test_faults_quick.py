"""benchmarks/faults.py's judgement of a final state, on synthetic folders (fast; the kill loop is the benchmark)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import faults
from edgekd.export.artifacts import sha256_file


def make_run(d: Path, epochs=(1, 2, 3), scale: float = 1.0) -> Path:
    """A run folder with every file the contract names; weights are `scale` * a fixed tensor."""
    from safetensors.numpy import save_file

    for name in faults.RUN_FILES:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text("{}\n")
    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3) * scale}, str(d / "model.safetensors"))
    (d / "model.json").write_text(json.dumps({"weights_sha256": sha256_file(d / "model.safetensors")}))
    (d / "results.json").write_text(json.dumps({"epochs": 3}))
    (d / "metrics.csv").write_text("epoch,step\n" + "".join(f"{e},{2 * e}\n" for e in epochs))
    return d


@pytest.fixture
def reference(tmp_path) -> Path:
    return make_run(tmp_path / "ref")


def test_a_complete_run_is_complete(tmp_path, reference):
    assert faults.run_problems(make_run(tmp_path / "r"), 3, reference) == []
    assert faults.classify(0, [], 0, [], [], []) == (faults.COMPLETE, [])


@pytest.mark.parametrize("epochs,finding", [
    ((1, 2, 2, 3), "logs epoch 2 2 times"), ((1, 3), "misses epoch 2"), ((1, 2, 3, 4), "epoch 4, beyond 3")])
def test_a_duplicated_missing_or_extra_epoch_is_corrupt(tmp_path, reference, epochs, finding):
    problems = faults.run_problems(make_run(tmp_path / "r", epochs), 3, reference)
    assert any(finding in p for p in problems), problems
    assert faults.classify(0, [], 0, problems, [], [])[0] == faults.CORRUPT


def test_weights_not_bit_identical_to_the_uninterrupted_run_are_corrupt(tmp_path, reference):
    problems = faults.run_problems(make_run(tmp_path / "r", scale=1.0 + 1e-7), 3, reference)
    assert problems == ["model.safetensors: 1 of 1 tensors differ from the uninterrupted run (max |diff| 4.77e-07)"]


def test_missing_files_and_a_stale_card_are_corrupt(tmp_path, reference):
    run = make_run(tmp_path / "r")
    (run / "MODEL_CARD.md").unlink()
    assert faults.run_problems(run, 3, reference) == ["missing MODEL_CARD.md"]
    run = make_run(tmp_path / "s")
    (run / "model.json").write_text(json.dumps({"weights_sha256": "0" * 64}))
    assert "model.json's weights_sha256 does not match model.safetensors" in faults.run_problems(run, 3, reference)


def test_a_refusal_is_clear_only_with_one_line_and_nothing_touched():
    line = "edgekd train: error: RUN holds a run; fix: add --resume or --overwrite"
    assert faults.classify(2, ["some warning", line], 0, ["missing results.json"], [], []) == (faults.REFUSED, [])
    verdict, why = faults.classify(2, ["Traceback (most recent call last):", line], 0, [], [], [])
    assert verdict == faults.CORRUPT and "without a one-line error" in why[0]
    verdict, why = faults.classify(2, [line], 0, [], ["metrics.csv deleted"], [])
    assert verdict == faults.CORRUPT and why == ["refused, yet the rerun metrics.csv deleted"]
    verdict, why = faults.classify(0, [], 0, [], [], ["model.safetensors changed"])
    assert verdict == faults.CORRUPT and why == ["earlier result lost: model.safetensors changed"]


def test_changed_lists_deleted_and_modified_files(tmp_path):
    run = make_run(tmp_path / "r")
    before = faults.sha256s(run)
    (run / "metrics.csv").write_text("epoch\n1\n")
    (run / "results.json").unlink()
    assert sorted(faults.changed(before, run)) == ["metrics.csv changed", "results.json deleted"]


def write_onnx(path: Path, weights_sha256: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"edgekd.weights_sha256": json.dumps(weights_sha256)})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_export(out: Path, int8_passed: bool) -> Path:
    """onnx-fp32 verified; onnx-int8 at its final path, passed or not as asked; a failed candidate under failed/."""
    write_onnx(out / "onnx" / "model.onnx", "abc")
    write_onnx(out / "onnx" / "model.int8.onnx", "abc")
    write_onnx(out / "failed" / "onnx" / "model.int8.onnx", "abc")
    rows = [{"name": "onnx-fp32", "status": "ok", "passed": True, "path": str(out / "onnx" / "model.onnx")},
            {"name": "onnx-int8", "status": "ok", "passed": int8_passed, "path": str(out / "onnx" / "model.int8.onnx")}]
    (out / "report.json").write_text(json.dumps({"artifacts": rows, "build": []}))
    return out


def test_an_unverified_artifact_at_a_final_path_is_corrupt_and_one_under_failed_is_not(tmp_path):
    good = make_export(tmp_path / "good", int8_passed=True)
    assert faults.export_problems(good, "abc", {"onnx-fp32", "onnx-int8"}) == []
    bad = make_export(tmp_path / "bad", int8_passed=False)
    assert faults.export_problems(bad, "abc", {"onnx-fp32"}) == [
        "onnx/model.int8.onnx sits at a final path but report.json does not list it as verified"]
    assert faults.export_problems(good, "other", set())[0].startswith("onnx/model.int8.onnx its metadata names weights")
    (good / "onnx" / "model.int8.onnx").write_bytes(b"not an onnx")
    assert "does not load" in faults.export_problems(good, "abc", set())[0]


def test_an_export_that_lost_a_verified_artifact_is_corrupt(tmp_path):
    out = make_export(tmp_path / "x", int8_passed=False)
    (out / "onnx" / "model.int8.onnx").unlink()
    assert faults.export_problems(out, "abc", {"onnx-fp32", "onnx-int8"}) == [
        "verified by the uninterrupted export, not after the rerun: onnx-int8"]


def make_sweep(out: Path, listed: list[str], cells: list[str]) -> Path:
    for c in cells:
        make_run(out / c)
    table = {"cells": [{"run_dir": str(out / c)} for c in listed], "failed": []}
    (out / "table.json").write_text(json.dumps(table))
    return out


def test_a_sweep_listing_a_cell_twice_or_missing_a_cell_folder_is_corrupt(tmp_path):
    cells = ["cells/ds/f1/ours/draw0", "cells/ds/f1/cm1/draw0"]
    ref = make_sweep(tmp_path / "ref", cells, cells)
    assert faults.sweep_problems(make_sweep(tmp_path / "ok", cells, cells), cells, 3, ref) == []
    twice = make_sweep(tmp_path / "twice", [cells[0], cells[0], cells[1]], cells)
    assert faults.sweep_problems(twice, cells, 3, ref) == [f"table.json lists {cells[0]} 2 times"]
    half = make_sweep(tmp_path / "half", cells, cells[:1])
    assert faults.sweep_problems(half, cells, 3, ref) == [f"{cells[1]}: missing {', '.join(faults.RUN_FILES)}"]
