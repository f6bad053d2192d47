"""A diverged run fails (issue 16, point 5): a NaN/Inf loss stops training with exit 1 and one line
saying where and what to try, and nothing is written as if the run had succeeded."""

import pytest

from tests.test_train_e2e import cli_train, tiny  # noqa: F401  (module fixture)


def test_a_diverging_run_stops_with_exit_1_and_saves_no_model(tiny, tmp_path, capsys):
    run_dir = tmp_path / "r"
    rc, lines, _ = cli_train(capsys, tiny, run_dir, "optim.lr=1e6", "val_limit=2")
    assert rc == 1 and len(lines) == 1, lines  # today: "test accuracy 0.3333", exit 0
    assert lines[0].startswith("edgekd train: failed: training diverged at epoch 1, batch ")
    assert "loss=nan" in lines[0] or "loss=inf" in lines[0]
    assert "lower optim.lr (now 1e+06)" in lines[0] and "check the data" in lines[0]
    for name in ("model.safetensors", "best.safetensors", "results.json", "MODEL_CARD.md",
                 "checkpoints/epoch_0001/COMPLETE"):
        assert not (run_dir / name).exists(), name
    assert not (run_dir / ".lock").exists()


@pytest.mark.parametrize("setting", ["method.tau=nan", "method.tau=inf", "method.alpha=nan", "method.beta=nan",
                                     "optim.lr=nan", "optim.lr=-inf"])
def test_a_non_finite_setting_is_refused_before_training(tiny, tmp_path, capsys, setting):
    rc, lines, _ = cli_train(capsys, tiny, tmp_path / "r", setting)
    key = setting.split("=")[0]
    assert rc == 2 and len(lines) == 1 and f"error: {key}=" in lines[0] and "fix:" in lines[0], lines
    assert not (tmp_path / "r").exists()
