"""User errors of `edgekd train` and `edgekd sweep` are one line, exit 2, before anything trains
(issue 16, point 6), and a full disk during training says so instead of showing tracebacks."""

import errno
import shutil

import accelerate.checkpointing
import pytest

from tests.test_sweep import TINY
from tests.test_train_e2e import cli_run, cli_train, tiny  # noqa: F401  (module fixture)


@pytest.mark.parametrize("setting,expected", [
    ("optim.lr=-0.01", "optim.lr=-0.01 must be > 0"),  # today: a torch traceback
    ("optim.lr=0", "optim.lr=0 must be > 0"),
    ("method.tau=0", "method.tau=0 must be > 0"),
    ("data.fraction=2.0", "data.fraction=2.0 must be in (0, 1]"),
    ("data.fraction=0", "data.fraction=0.0 must be in (0, 1]"),
    ("data.test_size=1.0", "data.test_size=1.0 must be in (0, 1)"),
    ("data.test_size=nan", "data.test_size=nan must be in (0, 1)"),
])
def test_an_out_of_range_setting_is_one_line_exit_2(tiny, tmp_path, capsys, setting, expected):
    rc, lines, _ = cli_train(capsys, tiny, tmp_path / "r", setting)
    assert rc == 2 and len(lines) == 1 and expected in lines[0] and "fix:" in lines[0], lines
    assert not (tmp_path / "r").exists()


def test_a_sweep_with_a_bad_fraction_fails_before_any_cell_launches(tiny, tmp_path, capsys):
    out = tmp_path / "sw"
    rc, lines, _ = cli_run(capsys, "sweep", "--config", "lite2_to_lite0_fmnist", "--out", str(out), "--datasets",
                           str(tiny), "--fractions", "0.5", "2.0", "--methods", "cm1", "ours", "--draws", "2",
                           "--launcher", "inproc", *TINY)
    assert rc == 2 and len(lines) == 1, lines  # today: every cell launched, each one failed
    assert "data.fraction=2.0 must be in (0, 1]" in lines[0] and "no cell was launched" in lines[0]
    assert not (out / "cells").exists()


def _fail_saving_the_optimizer(monkeypatch, error: Exception) -> None:
    real = accelerate.checkpointing.save

    def save(obj, f, **kw):
        if str(f).endswith("optimizer.bin"):
            raise error
        return real(obj, f, **kw)

    monkeypatch.setattr(accelerate.checkpointing, "save", save)


@pytest.mark.parametrize("how", ["oserror", "torch"])
def test_a_full_disk_during_a_checkpoint_is_one_line_exit_2(tiny, tmp_path, capsys, monkeypatch, how):
    if how == "oserror":
        _fail_saving_the_optimizer(monkeypatch, OSError(errno.ENOSPC, "No space left on device", "optimizer.bin"))
    else:  # torch.save's own words for a full disk, which name no errno
        _fail_saving_the_optimizer(monkeypatch, RuntimeError("[enforce fail at inline_container.cc:672] . "
                                                             "PytorchStreamWriter failed writing file data/0"))
        monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(2**30, 2**30, 4096))
    run_dir = tmp_path / "r"
    rc, lines, _ = cli_train(capsys, tiny, run_dir)
    assert rc == 2 and len(lines) == 1 and "no space left on the device" in lines[0], lines
    assert not (run_dir / "checkpoints" / "epoch_0001" / "COMPLETE").exists()
    assert not (run_dir / ".lock").exists()
