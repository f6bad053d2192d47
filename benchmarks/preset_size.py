"""The offline preset at several input sizes, side by side: training time, S's test accuracy, and whether
its ONNX Runtime and OpenVINO INT8 pass verify (what the quickstart's input size rests on).

Each (seed, size) trains `edgekd/configs/lite2_to_lite0_fmnist.yaml` with `model.image_size=SIZE seed=SEED`
through `accelerate launch` (the quickstart's command), then exports it (`--target onnx,openvino`, the
quickstart's INT8 defaults). Sizes alternate within each seed, so a drift in the box's speed hits each
alike. Fashion-MNIST is 28 px: every size here upsamples it, so a smaller input loses no source detail.

    .venv/bin/python benchmarks/preset_size.py [--sizes 64 56] [--seeds 0 1] [--work /tmp/preset_size]
Writes benchmarks/results/preset_size.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from results_io import write_results  # noqa: E402

PRESET = "edgekd/configs/lite2_to_lite0_fmnist.yaml"
BIN = ROOT / ".venv" / "bin"
# this checkout's edgekd first, ahead of the venv's editable install (a snapshot times its own code)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def timed(cmd: list[str], log: Path) -> tuple[float, int]:
    t = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=ENV).returncode
    return time.perf_counter() - t, rc


def one(size: int, seed: int, work: Path) -> dict:
    run = work / f"s{size}_seed{seed}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    train_s, rc = timed([str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", "1", "edgekd/train.py",
                         "--config", PRESET, f"run_dir={run / 'train'}", f"model.image_size={size}", f"seed={seed}",
                         "progress=false"], run / "train.log")
    if rc != 0:
        raise SystemExit(f"training at {size} px, seed {seed} failed (exit {rc}): see {run / 'train.log'}")
    export_s, rc = timed([str(BIN / "edgekd"), "export", "--run", str(run / "train"), "--target", "onnx,openvino",
                          "--out", str(run / "export")], run / "export.log")
    if rc not in (0, 1):  # 1: built, some artifact failed verify (a finding, recorded below)
        raise SystemExit(f"export at {size} px, seed {seed} failed (exit {rc}): see {run / 'export.log'}")
    res = json.loads((run / "train" / "results.json").read_text())
    report = json.loads((run / "export" / "report.json").read_text())
    int8 = {a["name"]: {"share": a.get("int8_share"), "agreement_pct": a.get("agreement_pct"), "passed": a.get("passed")}
            for a in report["artifacts"] if a["precision"] == "int8"}
    return {"size": size, "seed": seed, "train_s": round(train_s, 1), "export_s": round(export_s, 1),
            "step_s": res["step_seconds_mean"], "steps": res["steps"], "accuracy": res["accuracy"],
            "macro_f1": res["macro_f1"], "int8": int8, "pick": report.get("pick_headline")}


def summary(rows: list[dict], sizes: list[int]) -> list[dict]:
    out = []
    for s in sizes:
        mine = [r for r in rows if r["size"] == s]
        out.append({"size": s, "train_s": statistics.mean(r["train_s"] for r in mine),
                    "accuracy": statistics.mean(r["accuracy"] for r in mine),
                    "int8_pass": sum(all(v["passed"] for v in r["int8"].values()) for r in mine), "runs": len(mine)})
    return out


def markdown(res: dict) -> str:
    lines = ["# The offline preset's input size, side by side", "", f"Command: `{res['command']}`", "",
             f"Machine: {res['cpu']}; load average at start {res['load'][0]:.2f}, end {res['load'][1]:.2f}. Commit "
             f"{res['commit']}.", "",
             "| px | seed | train s | step s | S test acc | ORT INT8 (share, agreement, verdict) | OpenVINO INT8 | export s |",
             "|---|---|---|---|---|---|---|---|"]
    cell = lambda v: f"{v['share'] * 100:.0f} %, {v['agreement_pct']:.1f} %, {'PASS' if v['passed'] else 'FAIL'}" if v else "-"  # noqa: E731
    for r in res["rows"]:
        lines.append(f"| {r['size']} | {r['seed']} | {r['train_s']:.0f} | {r['step_s']:.3f} | {r['accuracy']:.3f} | "
                     f"{cell(r['int8'].get('onnx-int8'))} | {cell(r['int8'].get('openvino-int8'))} | {r['export_s']:.0f} |")
    base = res["summary"][0]
    lines += ["", "Means over seeds:", ""]
    for s in res["summary"]:
        lines.append(f"- {s['size']} px: training {s['train_s']:.0f} s ({s['train_s'] / base['train_s']:.2f}x the "
                     f"{base['size']}-px time), S's test accuracy {s['accuracy']:.3f} ({(s['accuracy'] - base['accuracy']) * 100:+.1f} pt), "
                     f"both INT8 artifacts passing verify in {s['int8_pass']} of {s['runs']} runs")
    lines += ["", verdict(res["summary"])]
    return "\n".join(lines) + "\n"


def verdict(summary: list[dict]) -> str:
    """Whether a smaller input pays for itself: it must take a tenth or more off the training stage."""
    base, *others = summary
    fast = [s for s in others if s["train_s"] <= 0.9 * base["train_s"]]
    if not fast:
        return (f"No smaller size takes a tenth off the training stage (the step time is far from proportional to "
                f"the pixels), so the preset keeps {base['size']} px and its accuracy.")
    best = min(fast, key=lambda s: s["train_s"])
    return (f"{best['size']} px takes {1 - best['train_s'] / base['train_s']:.0%} off the training stage for "
            f"{(best['accuracy'] - base['accuracy']) * 100:+.1f} pt of S's test accuracy.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 56], help="input sizes; the first is the baseline")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--work", type=Path, default=Path("/tmp/preset_size"))
    ap.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from edgekd.export.bench import cpu_info

    cpu, load0 = cpu_info(), os.getloadavg()[0]
    rows = []
    for seed in a.seeds:
        for size in a.sizes if seed % 2 == 0 else reversed(a.sizes):
            rows.append(one(size, seed, a.work))
            print(rows[-1], flush=True)
    commit = (subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
              or os.environ.get("EDGEKD_SNAPSHOT_OF", "unknown"))  # a `git archive` snapshot names its commit
    res = {"command": "python benchmarks/preset_size.py" + "".join(f" {x}" for x in (argv or sys.argv[1:])),
           "cpu": f"{cpu['cpu_model']} ({', '.join(k for k, v in cpu['isa'].items() if v)})", "commit": commit,
           "load": (load0, os.getloadavg()[0]), "rows": rows, "summary": summary(rows, a.sizes)}
    write_results(a.results_dir, "preset_size", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
