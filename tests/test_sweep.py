"""`edgekd sweep`: the cell plan, resumability (finished cells are skipped) and the table."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from edgekd import sweep

TINY = [
    "data.test_size=0.25", "model.teacher=vit_small_patch16_224", "model.teacher_pretrained=false", "model.teacher_weights=null",
    "model.teacher_kwargs={img_size: 32, patch_size: 8, depth: 4}", "model.student=vit_tiny_patch16_224",
    "model.student_kwargs={img_size: 32, patch_size: 8, depth: 2}", "model.image_size=32", "optim.epochs=1",
    "optim.batch_size=8", "optim.warmup_epochs=0", "trackers=none", "val_limit=null",
]


def _tiny(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for k, name in enumerate(["a", "b", "c"]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            arr = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            arr[:, :, k] += 150
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def test_plan_and_params():
    cells = sweep.plan(["x"], [0.01, 0.05], ["ours", "cm1"], 3, sweep.parse_params(["method.alpha=0.3,0.6"]))
    assert len(cells) == 2 * 2 * 3 * 2
    assert [c.draw for c in cells[:8]] == [0] * 8  # draw-major
    c = cells[1]
    assert c.params == {"method.alpha": "0.6"} and "alpha=0.6" in str(c.run_dir(Path("o")))
    ov = c.overrides(Path("o"), seed=10)
    assert "data.draw=0" in ov and "seed=10" in ov and "method.alpha=0.6" in ov


def test_sweep_runs_resumes_and_tabulates(tmp_path, capsys):
    ds = _tiny(tmp_path / "ds")
    out = tmp_path / "sw"
    args = ["--config", "lite2_to_lite0_fmnist", "--out", str(out), "--datasets", str(ds), "--fractions", "1.0",
            "--methods", "ours", "cm2", "--draws", "2", "--launcher", "inproc", *TINY]
    assert sweep.main(args) == 0
    table = json.loads((out / "table.json").read_text())
    assert len(table["cells"]) == 4
    assert not list(out.glob("cells/**/checkpoints"))  # finished cells drop their resume state
    row = table["table"]["ds"]["ours"]["1"]
    assert row["n"] == 2 and abs(row["mean"] - np.mean(row["values"])) < 1e-12
    md = (out / "table.md").read_text()
    assert "| ours |" in md and "| cm2 |" in md and "±" in md and "100%" in md
    # resumable: delete one cell's results, the rerun trains only that cell
    victim = out / "cells" / "ds" / "f1" / "cm2" / "draw1"
    (victim / "results.json").unlink()
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("cells/**/results.json")}
    capsys.readouterr()
    assert sweep.main(args) == 0
    assert "3 already done, 1 to run" in capsys.readouterr().out
    assert (victim / "results.json").exists()
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())
    # a changed setting makes finished cells stale: they are re-run, never mixed into the table
    assert sweep.main([*args, "method.alpha=0.5", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.startswith("stale ") for line in lines)


def test_hyperparameter_sweep_dry_run(tmp_path, capsys):
    args = ["--config", "vit_s_to_t", "--out", str(tmp_path / "a"), "--methods", "ours", "--fractions", "0.01",
            "--draws", "2", "--param", "method.alpha=0.2,1.0", "--param", "method.tau=2,4", "--dry-run"]
    assert sweep.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 8 and all(line.startswith("todo ") for line in out)
    assert any("alpha=1.0,tau=2" in line for line in out)
