"""Checkpoints without pickle (issue 16, point 3): a resume reads safetensors, JSON and files that
`torch.load(weights_only=True)` accepts, nothing else; a planted pickle stops the resume unrun.

Accelerate's `register_for_checkpointing` would save the progress, the LR schedule and S' as
`custom_checkpoint_N.pkl` and load them with `weights_only=False`: any code in such a file runs.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edgekd import train
from tests.test_train_e2e import TINY_VIT, cli_train, run, tiny  # noqa: F401  (module fixture)

COMMON = ["optim.epochs=2", "data.fraction=0.5", "val_limit=2", "optim.warmup_epochs=0.5"]


@pytest.fixture(scope="module")
def stopped(tiny, tmp_path_factory) -> Path:
    """A run of method ours (S' checkpointed) stopped after epoch 1 of 2, as if killed."""
    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    assert train.main([*TINY_VIT, f"data.root={tiny}", f"run_dir={run_dir}", *COMMON, "stop_after=1"]) == 0
    return run_dir


@pytest.fixture
def killed(stopped, tmp_path) -> Path:
    return Path(shutil.copytree(stopped, tmp_path / "run"))


class Payload:
    """Unpickling this writes `marker`: what a crafted checkpoint file would do with real code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def test_a_checkpoint_holds_no_pickled_objects(stopped):
    ckpt = stopped / "checkpoints" / "epoch_0001"
    assert not list(ckpt.glob("custom_checkpoint_*"))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["progress"]["epoch"] == 1 and state["scheduler"]["last_epoch"] == state["progress"]["step"]
    assert load_file(ckpt / "aux.safetensors")  # S'
    from accelerate.utils import load

    for f in [*ckpt.glob("*.bin"), *ckpt.glob("*.pkl")]:  # optimizer, RNG: what accelerate reads, as it reads them
        load(f, map_location="cpu")  # weights_only=True


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"])
def test_a_planted_pickle_does_not_run_on_resume(tiny, killed, tmp_path, capsys, name):
    marker = tmp_path / "pwned"
    planted = killed / "checkpoints" / "epoch_0001" / name
    torch.save({"state": Payload(marker)}, planted)
    shutil.copy(planted, tmp_path / "probe.pkl")
    torch.load(tmp_path / "probe.pkl", weights_only=False)  # the payload is live: unpickling it writes the file
    assert marker.exists()
    marker.unlink()
    rc, lines, _ = cli_train(capsys, tiny, killed, *COMMON, "--resume")
    assert not marker.exists()
    assert rc == 2 and len(lines) == 1 and str(planted) in lines[0] and "fix:" in lines[0], lines
    assert not (killed / "model.safetensors").exists()


def test_resume_from_the_json_and_safetensors_state_is_bit_identical(tiny, killed, tmp_path):
    straight = tmp_path / "straight"
    run(tiny, straight, *COMMON)
    res = run(tiny, killed, *COMMON, "--resume")
    assert res["resumed_from"].endswith("epoch_0001")
    for stem in ("model", "aux", "best"):
        a, b = load_file(straight / f"{stem}.safetensors"), load_file(killed / f"{stem}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), stem
    final = [json.loads((d / "checkpoints" / "epoch_0002" / "trainer_state.json").read_text()) for d in (straight, killed)]
    assert final[0] == final[1]
