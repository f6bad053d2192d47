"""`edgekd sweep --launcher ray`: same table as in-process, retries a killed cell, records a failed one.

One local Ray (2 CPUs) serves the module. Training is deterministic for a given seed when torch
uses one thread (`num_threads=1`), so the Ray launcher's cells (a fresh `python -m edgekd.train`
per cell on a Ray worker) must reproduce the in-process launcher's accuracies exactly.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from edgekd import sweep
from edgekd.sweep import cli as sweep_cli  # the executor reads run_cell from here
from edgekd.errors import EdgeKDError
from tests.test_sweep import TINY, _tiny


@pytest.fixture(scope="module")
def ray_address():
    # 2 declared GPUs let a --gpus-per-cell 2 cell be scheduled on this CPU box (see the last test)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=True)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()  # stops the raylet, GCS and workers this test module started


def _args(ds: Path, out: Path, methods: list[str], launcher: str) -> list[str]:
    return ["--config", "lite2_to_lite0_fmnist", "--out", str(out), "--datasets", str(ds), "--fractions", "1.0",
            "--methods", *methods, "--draws", "1", "--launcher", launcher, *TINY, "num_threads=1"]


def test_ray_table_equals_inproc_table(ray_address, tmp_path):
    ds = _tiny(tmp_path / "ds")
    assert sweep.main(_args(ds, tmp_path / "inproc", ["ours", "cm2"], "inproc")) == 0
    # the ray sweep runs as its own driver process that joins the cluster by address, as a user would
    cmd = [sys.executable, "-m", "edgekd.cli", "sweep", *_args(ds, tmp_path / "ray", ["ours", "cm2"], "ray"),
           "--ray-address", ray_address, "--cpus-per-cell", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    local, remote = (json.loads((tmp_path / d / "table.json").read_text()) for d in ("inproc", "ray"))
    assert len(remote["cells"]) == 2 and remote["failed"] == []
    assert remote["table"] == local["table"]  # every accuracy identical, not just close
    assert (tmp_path / "ray" / "table.md").read_text() == (tmp_path / "inproc" / "table.md").read_text()
    assert all((Path(c["run_dir"]) / "attempts.log").read_text().count("host=") == 1 for c in remote["cells"])
    # tiny test sets make accuracies coarse: the trained weights themselves must be bit-identical
    sha = {d: [json.loads((Path(c["run_dir"]) / "model.json").read_text())["weights_sha256"] for c in t["cells"]]
           for d, t in (("inproc", local), ("ray", remote))}
    assert sha["ray"] == sha["inproc"] and len(set(sha["ray"])) == 2


def test_ray_retries_a_killed_cell_and_records_a_failed_one(ray_address, tmp_path, monkeypatch, capsys):
    ds, out = _tiny(tmp_path / "ds"), tmp_path / "sw"
    marker, real = tmp_path / "killed-once", sweep_cli.run_cell

    def flaky(cell, **kw):  # shipped by value to the Ray workers (a closure), so no hook in edgekd itself
        if cell.method == "cm2":
            raise RuntimeError("injected training failure")
        if not marker.exists():  # first attempt at `ours`: the worker process dies mid-cell
            marker.touch()
            os._exit(1)
        real(cell, **kw)

    monkeypatch.setattr(sweep_cli, "run_cell", flaky)
    args = [*_args(ds, out, ["ours", "cm2"], "ray"), "--retries", "1"]
    assert sweep.main(args) == 1  # the sweep finishes; the exit code says a cell failed
    table = json.loads((out / "table.json").read_text())
    attempts = {m: (out / "cells/ds/f1" / m / "draw0/attempts.log").read_text().count("host=") for m in ("ours", "cm2")}
    assert attempts == {"ours": 2, "cm2": 2}  # killed once then retried; failed twice then given up
    assert [c["method"] for c in table["cells"]] == ["ours"] and table["table"]["ds"]["ours"]["1"]["n"] == 1
    assert [f["method"] for f in table["failed"]] == ["cm2"]
    assert "injected training failure" in table["failed"][0]["error"] and "2 attempts" in table["failed"][0]["error"]
    assert "failed cells (1)" in (out / "table.md").read_text()
    # rerun (e.g. after the driver was killed): the finished cell is skipped, the failed one runs again
    monkeypatch.undo()
    capsys.readouterr()
    assert sweep.main(args) == 0
    assert "1 already done, 1 to run" in capsys.readouterr().out
    table = json.loads((out / "table.json").read_text())
    assert sorted(c["method"] for c in table["cells"]) == ["cm2", "ours"] and table["failed"] == []


def test_ray_cell_with_two_gpus_trains_through_accelerate_multi_process(ray_address, tmp_path, monkeypatch):
    ds, out, real = _tiny(tmp_path / "ds"), tmp_path / "sw", sweep_cli.run_cell

    def on_cpu(cell, **kw):  # no GPU here: accelerate's multi-process launch runs on CPU with gloo
        os.environ["ACCELERATE_USE_CPU"] = "1"
        real(cell, **kw)

    monkeypatch.setattr(sweep_cli, "run_cell", on_cpu)
    assert sweep.main([*_args(ds, out, ["cm2"], "ray"), "--gpus-per-cell", "2"]) == 0
    res = json.loads((out / "cells/ds/f1/cm2/draw0/results.json").read_text())
    assert res["world_size"] == 2  # one Ray task, two training processes (accelerate launch --multi_gpu)


def test_ray_flags_need_the_ray_launcher(tmp_path, monkeypatch):
    args = ["--config", "lite2_to_lite0_fmnist", "--out", str(tmp_path), "--launcher", "subprocess", "--dry-run"]
    with pytest.raises(EdgeKDError, match="only apply to --launcher ray .* with retries"):
        sweep.main([*args, "--retries", "3"])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the `cluster` extra were not installed
    with pytest.raises(EdgeKDError, match=r"pip install 'edgekd\[cluster\]'"):
        sweep.main([*args[:-3], "--launcher", "ray", "--dry-run"])


def test_a_cell_whose_results_are_not_visible_is_failed_not_a_crash(tmp_path, monkeypatch):
    # e.g. --out on a node-local disk: the cell trained elsewhere and its results.json never shows up here
    monkeypatch.setattr(sweep_cli, "run_cell", lambda cell, **kw: None)
    out = tmp_path / "sw"
    assert sweep.main(_args(_tiny(tmp_path / "ds"), out, ["cm2"], "inproc")) == 1
    failed = json.loads((out / "table.json").read_text())["failed"]
    assert len(failed) == 1 and "file system every node shares" in failed[0]["error"]
