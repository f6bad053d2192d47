"""Run folders never lose or mix anything (issue 16, point 2).

A folder holding a run is continued (`--resume`) or moved aside (`--overwrite`), never trained
over; `--resume` of a folder without a run is an error; one process writes a folder at a time
(`RUN/.lock`, a killed writer's lock is taken over); manifests are reused only for the data root
they were made from; a sweep moves a cell it must train again aside instead of deleting it.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekd.rundir import LOCK
from tests.test_train_e2e import REPO, TINY_VIT, cli_run, cli_train, run, tiny  # noqa: F401  (module fixture)


def snapshot(d: Path) -> dict[str, str]:
    """sha256 of every file under `d`, by relative path."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory) -> Path:
    """A finished run (2 epochs, a checkpoint per epoch); tests work on copies of it."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    run(tiny, run_dir, "optim.epochs=2")
    assert not (run_dir / LOCK).exists()  # released when the run ends
    return run_dir


@pytest.fixture
def old_run(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


def test_a_folder_holding_a_run_is_refused_and_left_as_it_was(tiny, old_run, capsys):
    before = snapshot(old_run)
    rc, lines, _ = cli_train(capsys, tiny, old_run)
    assert rc == 2 and len(lines) == 1, lines
    assert "holds a run" in lines[0] and "--resume" in lines[0] and "--overwrite" in lines[0]
    assert snapshot(old_run) == before  # today: checkpoints/ and metrics.csv deleted, old model kept


def test_overwrite_moves_the_old_run_aside_and_starts_again(tiny, old_run, capsys):
    before = snapshot(old_run)
    rc, lines, out = cli_train(capsys, tiny, old_run, "--overwrite")
    assert rc == 0, lines
    aside = list(old_run.parent.glob("run.old-*"))
    assert len(aside) == 1 and f"aside to {aside[0]}" in out
    assert snapshot(aside[0]) == before  # every file of the old run, byte for byte
    assert json.loads((old_run / "results.json").read_text())["epochs"] == 1  # the new run alone
    assert (old_run / "metrics.csv").read_text().count("\n") == 2


def test_resume_of_a_folder_without_a_run_is_an_error(tiny, tmp_path, capsys):
    typo = tmp_path / "rnu"
    rc, lines, _ = cli_run(capsys, "train", "--resume", f"run_dir={typo}", *TINY_VIT, f"data.root={tiny}")
    assert rc == 2 and len(lines) == 1 and "holds no run to resume" in lines[0] and "typo" in lines[0]
    assert not typo.exists()  # today: a fresh default run starts there


def test_resume_of_a_finished_run_without_checkpoints_is_refused(tiny, old_run, capsys):
    shutil.rmtree(old_run / "checkpoints")
    before = snapshot(old_run)
    rc, lines, _ = cli_train(capsys, tiny, old_run, "--resume")
    assert rc == 2 and len(lines) == 1 and "nothing to resume" in lines[0] and "--overwrite" in lines[0]
    assert snapshot(old_run) == before


def test_resume_with_another_data_root_is_refused_before_anything_is_written(tiny, old_run, tmp_path, capsys):
    other = Path(shutil.copytree(tiny, tmp_path / "other"))  # same file names: nothing else tells them apart
    before = snapshot(old_run)
    rc, lines, _ = cli_train(capsys, other, old_run, "--resume")
    assert rc == 2 and len(lines) == 1, lines
    assert f"lists images of {tiny}" in lines[0] and f"data.root is now {other}" in lines[0]
    assert snapshot(old_run) == before  # config.yaml still names the old root


def test_a_second_writer_is_refused_while_the_first_runs(tiny, tmp_path, capsys):
    run_dir = tmp_path / "busy"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, "-m", "edgekd.train", *TINY_VIT, f"data.root={tiny}",
                              f"run_dir={run_dir}", "optim.epochs=500"], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints").exists():  # locked, and training
            assert first.poll() is None and time.monotonic() < deadline, "the first trainer did not start"
            time.sleep(0.5)
        for flags in ([], ["--resume"], ["--overwrite"]):
            rc, lines, _ = cli_train(capsys, tiny, run_dir, *flags)
            assert rc == 2 and len(lines) == 1 and f"being written by pid {first.pid}" in lines[0], lines
        assert first.poll() is None  # the first one never noticed
    finally:
        first.kill()
        first.wait()
    assert not list(tmp_path.glob("busy.old-*"))


def test_a_killed_writers_lock_is_taken_over(tiny, old_run, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no process
    (old_run / LOCK).write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname()}))
    rc, lines, out = cli_train(capsys, tiny, old_run, "optim.epochs=2", "--resume")
    assert rc == 0, lines
    assert f"taking over the lock of pid {gone.pid}" in out and not (old_run / LOCK).exists()


def test_a_refused_resume_leaves_a_killed_writers_lock_as_it_was(tiny, tmp_path, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    started = tmp_path / "started"  # killed before it wrote anything but its lock
    started.mkdir()
    (started / LOCK).write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname()}))
    before = snapshot(started)
    rc, lines, _ = cli_train(capsys, tiny, started, "--resume")
    assert rc == 2 and "holds no run to resume" in lines[0] and snapshot(started) == before


def test_a_lock_of_another_host_is_not_taken_over(tiny, old_run, capsys):
    (old_run / LOCK).write_text(json.dumps({"pid": 1, "host": "node-17"}))
    rc, lines, _ = cli_train(capsys, tiny, old_run, "optim.epochs=2", "--resume")
    assert rc == 2 and "pid 1 on node-17" in lines[0] and f"delete {old_run / LOCK}" in lines[0]


def test_a_sweep_moves_a_cell_it_trains_again_aside(tiny, tmp_path, capsys):
    from tests.test_sweep import TINY

    out = tmp_path / "sw"
    args = ["--config", "lite2_to_lite0_fmnist", "--out", str(out), "--datasets", str(tiny), "--fractions", "1.0",
            "--methods", "cm1", "--draws", "1", "--launcher", "inproc", *TINY]
    assert cli_run(capsys, "sweep", *args)[0] == 0  # the cell's first run, into an empty folder
    cell = out / "cells" / tiny.name / "f1" / "cm1" / "draw0"
    before = snapshot(cell)
    assert cli_run(capsys, "sweep", *args, "method.alpha=0.5")[0] == 0  # other settings: trained again
    aside = list(cell.parent.glob("draw0.old-*"))
    assert len(aside) == 1 and snapshot(aside[0]) == before
    assert (cell / "results.json").is_file()
