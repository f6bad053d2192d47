"""The quickstart on a fresh clone, timed per stage: does `bash scripts/quickstart.sh` fit in 5 minutes?

Clones this repository's HEAD into a new folder (no .venv, no runs: what a new user has), runs the
quickstart there, and records the wall time of each stage as the script prints it, the total, S's
test accuracy, every INT8 artifact's verdict and the deployment pick, with the machine. Run it alone:
anything else on the 2 cores lengthens every stage.

    .venv/bin/python benchmarks/quickstart_time.py [--clone /tmp/edgekd_qs_clone]
    .venv/bin/python benchmarks/quickstart_time.py --name quickstart_time_3epochs -- optim.epochs=3 optim.warmup_epochs=0.5
Writes benchmarks/results/NAME.{json,md} (default quickstart_time); KEY=VALUE words after `--` reach the
training stage (the quickstart passes its arguments to `edgekd/train.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from results_io import write_results  # noqa: E402

BUDGET_S = 300
STAGE_LINE = re.compile(r"^\s+(\w+)\s+(\d+) s$")


def run_quickstart(clone: Path, overrides: list[str]) -> tuple[int, float, str]:
    """(exit code, wall seconds, console output) of the quickstart in a fresh clone of HEAD."""
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "scripts/quickstart.sh", *overrides], cwd=clone, env=env, capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - t0, proc.stdout + proc.stderr


def speed_probe_ms(steps: int = 8) -> float:
    """The box's speed now: median ms of the preset's training step (Lite0, batch 32 at 64 px, forward +
    backward + AdamW, 2 threads). Shared 2-core machines here run the same step at different speeds from
    hour to hour; records compare by this, not by their totals alone. A fixed yardstick: AdamW's default
    kernel, as in the earlier records, whatever the trainer builds."""
    import statistics

    import timm
    import torch

    torch.set_num_threads(2)
    model = timm.create_model("tf_efficientnet_lite0", num_classes=10).train()
    opt = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(32, 3, 64, 64).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (32,))
    times = []
    for i in range(steps + 3):
        t = time.perf_counter()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return round(1e3 * statistics.median(times[3:]), 1)


def stage_times(console: str) -> dict[str, int]:
    """The table the quickstart prints after '== wall time per stage ==' (total included)."""
    table = console.split("== wall time per stage ==", 1)[-1]
    return {m.group(1): int(m.group(2)) for m in map(STAGE_LINE.match, table.splitlines()) if m}


def outcome(run: Path) -> dict:
    """S's test accuracy, the INT8 artifacts' verdicts and the pick, from the run's own records."""
    train = json.loads((run / "train" / "results.json").read_text())
    report = json.loads((run / "export" / "report.json").read_text())
    int8 = [{"name": a["name"], "passed": a["passed"], "int8_share": a.get("int8_share"),
             "agreement_pct": a["agreement_pct"], "reasons": a["reasons"]}
            for a in report["artifacts"] if a["precision"] == "int8" and a["status"] == "ok"]
    return {"test_accuracy": round(train["test"]["accuracy"], 4), "int8": int8, "pick": report.get("pick_headline"),
            "steps": train["steps"], "step_s": round(train["step_seconds_mean"], 4)}


def training_bound(t: dict[str, int], o: dict) -> str:
    """Where the training stage goes, and the step time the budget would need with the other stages as they ran."""
    if "train" not in t or not o.get("steps"):
        return ""
    steps_s = o["steps"] * o["step_s"]
    others = t["total"] - t["train"]
    need = (BUDGET_S - others - (t["train"] - steps_s)) / o["steps"]  # the stage's own overhead kept
    head = (f"Training: {o['steps']} optimizer steps x {o['step_s']:.3f} s (`step_seconds_mean`: S's forward and "
            f"backward, S' forward, the EMA update) = {steps_s:.0f} s of the stage's {t['train']} s (the rest: launch, "
            f"data, validation, test evaluation, saving). The other stages took {others} s")
    if need <= 0:
        return head + f": no step time fits the {BUDGET_S} s budget with that overhead."
    return head + (f", so within {BUDGET_S} s the training stage would have {BUDGET_S - others} s: with the same "
                   f"overhead, a step of at most {need:.3f} s ({o['step_s'] / need:.2f}x faster than this run's).")


def markdown(res: dict) -> str:
    t, o = res["stages_s"], res["outcome"]
    met = "**met**" if res["rc"] == 0 and t.get("total", 1e9) <= BUDGET_S else "**not met**"
    lines = ["# The quickstart on a fresh clone, per stage", "", f"Command: `{res['command']}`", "",
             f"Training overrides: {' '.join(res['overrides']) or 'none (the offline preset as it is)'}.", "",
             f"Machine: {res['cpu']}; load average at start {res['load'][0]:.2f}, end {res['load'][1]:.2f}. "
             f"Commit {res['commit']}.", "",
             f"Box speed probe (`speed_probe_ms`: the preset's training step, Lite0 batch 32 at 64 px, 2 threads): "
             f"{res['probe_ms'][0]} ms before, {res['probe_ms'][1]} ms after the run (lower is faster: a shared "
             "box's speed moves from hour to hour, so compare records at similar probes).", "",
             f"Total **{t.get('total')} s** (exit code {res['rc']}) against the {BUDGET_S} s budget: {met}. "
             f"S's test accuracy {o['test_accuracy']}.", "",
             "| stage | wall s |", "|---|---|"] + [f"| {k} | {v} |" for k, v in t.items()]
    bound = training_bound(t, o) if t.get("total", 0) > BUDGET_S else ""
    lines += (["", bound] if bound else []) + ["", f"Deployment pick: {o['pick']}", "", "INT8 artifacts:"]
    for a in o["int8"]:
        share = f"{100 * a['int8_share']:.0f} % INT8" if a["int8_share"] is not None else "INT8 share unknown"
        verdict = "passes verify" if a["passed"] else "FAILS verify: " + "; ".join(a["reasons"])
        lines.append(f"- {a['name']}: {share}, agreement {a['agreement_pct']:.1f} %, {verdict}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clone", type=Path, default=Path("/tmp/edgekd_qs_clone"), help="fresh clone goes here (replaced)")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--name", default="quickstart_time", help="results file name")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE for the training stage (after --)")
    argv = sys.argv[1:] if argv is None else argv
    a = ap.parse_args(argv)
    from edgekd.export.bench import cpu_info  # torch-free: reads /proc/cpuinfo

    cpu = cpu_info()
    load0, probe0 = os.getloadavg()[0], speed_probe_ms()
    rc, wall, console = run_quickstart(a.clone, a.overrides)
    (a.clone / "quickstart_console.log").write_text(console)
    res = {"command": " ".join(["python benchmarks/quickstart_time.py", *map(shlex.quote, argv)]), "overrides": a.overrides,
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip(),
           "cpu": f"{cpu['cpu_model']}, {cpu['affinity_cores']} cores ("
                  + ", ".join(k for k, v in cpu["isa"].items() if v) + ")",
           "load": (load0, os.getloadavg()[0]), "probe_ms": (probe0, speed_probe_ms()), "rc": rc, "wall_s": round(wall, 1), "stages_s": stage_times(console),
           "outcome": outcome(a.clone / "runs" / "quickstart") if rc == 0 else {"test_accuracy": None, "int8": [],
                                                                               "pick": None},
           "console_tail": console.splitlines()[-12:]}
    write_results(a.results_dir, a.name, res, markdown(res))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
