"""A 4-cell sweep on a local Ray gives the same table as `--launcher inproc`, and survives a killed driver.

    .venv/bin/python benchmarks/sweep_ray_parity.py             # ~3-5 min on 2 shared cores

Three runs of the same sweep (Fashion-MNIST stand-in, 1% subset, methods ours + cm2, 2 draws,
tiny ViT-S -> ViT-T at 32 px, one epoch, `num_threads=1`, each its own `edgekd sweep` process):
1. `--launcher inproc`: the reference, one cell after another in one process;
2. `--launcher ray --cpus-per-cell 1`: a local Ray (2 CPUs), two cells at a time;
3. `--launcher ray` again into a fresh directory, its driver SIGKILLed as soon as the first
   cell has finished, then rerun: the rerun must skip the finished cells and end on the same table.
Parity is checked on the table (means, stds and every per-draw accuracy), on table.md, and on
the trained weights (sha256 of every cell's model.safetensors): training is deterministic for a
seed with one torch thread, whatever process or Ray worker runs it.
Writes benchmarks/results/sweep_ray_parity.{json,md}.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results"
SWEEP = ["--config", "lite2_to_lite0_fmnist", "--datasets", "fashion-mnist", "--fractions", "0.01",
         "--methods", "ours", "cm2", "--draws", "2"]
TINY = ["model.teacher=vit_small_patch16_224", "model.teacher_pretrained=false", "model.teacher_weights=null",
        "model.teacher_kwargs={img_size: 32, patch_size: 8, depth: 4}", "model.student=vit_tiny_patch16_224",
        "model.student_kwargs={img_size: 32, patch_size: 8, depth: 2}", "model.image_size=32", "optim.epochs=1",
        "optim.warmup_epochs=0", "data.test_limit=50", "val_limit=null", "trackers=none", "num_threads=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def sweep_cmd(out: Path, launcher: str) -> list[str]:
    extra = ["--cpus-per-cell", "1"] if launcher == "ray" else []
    return [sys.executable, "-m", "edgekd.cli", "sweep", *SWEEP, "--out", str(out), "--launcher", launcher, *extra, *TINY]


def run(out: Path, launcher: str) -> dict:
    """One complete sweep in its own process; its wall time and what it printed first."""
    t0 = time.perf_counter()
    r = subprocess.run(sweep_cmd(out, launcher), env=ENV, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{launcher} sweep failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    plan_line = next(line for line in r.stdout.splitlines() if line.startswith("sweep: "))
    return {"launcher": launcher, "wall_seconds": round(time.perf_counter() - t0, 1), "plan": plan_line}


def run_killed_then_resumed(out: Path) -> dict:
    """SIGKILL the Ray driver once the first cell is finished, then rerun the same command."""
    driver = subprocess.Popen(sweep_cmd(out, "ray"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    while not list(out.glob("cells/**/results.json")):
        if driver.poll() is not None:
            raise SystemExit(f"the ray sweep ended ({driver.returncode}) before it could be killed")
        time.sleep(0.5)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished_at_kill = len(list(out.glob("cells/**/results.json")))
    time.sleep(5)  # Ray's GCS, raylet and workers (and the trainers under them) die with the driver
    left = _session_processes(driver.pid)
    for pid in left:  # never leave our own processes behind (only those of this driver's session)
        os.kill(pid, signal.SIGKILL)
    leftover = sorted(set(left.values()))
    resumed = run(out, "ray")
    resumed.update(finished_at_kill=finished_at_kill, processes_left_by_killed_driver=leftover,
                   skipped_on_rerun=int(re.search(r"(\d+) already done", resumed["plan"]).group(1)))
    return resumed


def _session_processes(sid: int) -> dict[int, str]:
    """Live (not zombie) processes still in the killed driver's session: pid -> command."""
    ps = subprocess.run(["ps", "-o", "pid=,stat=,args=", "--sid", str(sid)], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in ps.splitlines() if line.strip()]
    return {int(pid): args[:60] for pid, stat, args in rows if not stat.startswith("Z")}


def cells(out: Path) -> dict[str, dict]:
    """run dir (relative to the sweep) -> accuracy and the trained weights' sha256."""
    table = json.loads((out / "table.json").read_text())
    return {str(Path(c["run_dir"]).relative_to(out)): {
        "accuracy": c["accuracy"],
        "weights_sha256": json.loads((Path(c["run_dir"]) / "model.json").read_text())["weights_sha256"]}
        for c in table["cells"]}


def compare(ref: Path, other: Path) -> dict:
    a, b = (json.loads((d / "table.json").read_text()) for d in (ref, other))
    return {"table_equal": a["table"] == b["table"],
            "table_md_equal": (ref / "table.md").read_text() == (other / "table.md").read_text(),
            "weights_equal": cells(ref) == cells(other), "cells": len(b["cells"]), "failed": len(b["failed"])}


def write(result: dict, table_md: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sweep_ray_parity.json").write_text(json.dumps(result, indent=2) + "\n")
    runs = result["runs"]
    lines = ["# `edgekd sweep`: local Ray vs in-process, same 4-cell sweep", "",
             f"Command: `{result['command']}`", "",
             f"Sweep (each run its own process): `edgekd sweep {' '.join(SWEEP)} --launcher L {' '.join(TINY)}`", "",
             f"Machine: {result['machine']}; Ray {result['ray_version']}.", "",
             "| run | wall s (of the rerun, for the killed one) | cells | failed | table equal | table.md equal | weights equal |", "|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        p = r.get("parity", {})
        lines.append(f"| {name} | {r['wall_seconds']} | {p.get('cells', '-')} | {p.get('failed', '-')} | "
                     f"{p.get('table_equal', 'reference')} | {p.get('table_md_equal', '-')} | {p.get('weights_equal', '-')} |")
    k = runs["ray_killed_then_resumed"]
    lines += ["", f"Killed driver: SIGKILL after {k['finished_at_kill']} finished cell(s); processes left behind by "
              f"it 5 s later: {k['processes_left_by_killed_driver'] or 'none'} (the GCS, raylet, workers and trainers "
              f"were gone; Ray's agents, if listed, are removed by this script); the rerun skipped {k['skipped_on_rerun']} finished "
              "cell(s) (a cell about to finish at the kill may still write its results before its trainer stops) "
              f"(`{k['plan']}`).", "",
              "Wall times are on 2 shared cores: Ray runs 2 cells at a time but each cell is a fresh "
              "`python -m edgekd.train` (~5-10 s of imports), so on cells this tiny it is not faster.", "",
              "The table (identical for all three runs):", "", table_md]
    (OUT / "sweep_ray_parity.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    import ray

    with tempfile.TemporaryDirectory(prefix="sweep_ray_parity_") as tmp:
        root = Path(tmp)
        runs = {"inproc": run(root / "inproc", "inproc"), "ray": run(root / "ray", "ray"),
                "ray_killed_then_resumed": run_killed_then_resumed(root / "killed")}
        for name, d in (("ray", "ray"), ("ray_killed_then_resumed", "killed")):
            runs[name]["parity"] = compare(root / "inproc", root / d)
            print(f"{name}: {runs[name]['parity']}")
        table_md = (root / "inproc" / "table.md").read_text()
        result = {"command": "python benchmarks/sweep_ray_parity.py", "ray_version": ray.__version__,
                  "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                  "runs": runs, "cells": cells(root / "inproc")}
    write(result, table_md)
    ok = all(r["parity"][k] for r in list(runs.values())[1:] for k in ("table_equal", "table_md_equal", "weights_equal"))
    print(f"parity: {'OK' if ok else 'MISMATCH'} -> {OUT / 'sweep_ray_parity.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
