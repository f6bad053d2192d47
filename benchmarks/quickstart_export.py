"""The quickstart's export step on a run trained by the offline preset, recorded: do its INT8 artifacts pass verify?

Why: `bash scripts/quickstart.sh` ends with `edgekd export --run RUN/train --target all`; this
runs that same step (in-process, same defaults: accuracy-aware INT8 on a training-split
validation slice) and writes the report's table, each INT8 artifact's float nodes, search tries
and their latency cost, plus the machine, to benchmarks/results/NAME.json + .md.

    .venv/bin/accelerate launch --cpu --num_processes 1 edgekd/train.py \\
        --config edgekd/configs/lite2_to_lite0_fmnist.yaml run_dir=/tmp/qs/train
    .venv/bin/python benchmarks/quickstart_export.py --run /tmp/qs/train --out /tmp/qs/export
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def int8_lines(report: dict) -> list[str]:
    """One line per INT8 artifact: verdict, and what the accuracy-aware search kept in float."""
    verify = {v["name"]: v for v in report["verify"]}
    lines = []
    for name in ("onnx-int8", "openvino-int8"):
        v = verify.get(name)
        if v is None:
            lines.append(f"- {name}: not built/verified")
            continue
        note = next((n for n in report["notes"] if n.startswith(name + ":")), "")
        verdict = "PASSES" if v["passed"] else "FAILS (" + "; ".join(v["reasons"]) + ")"
        lines.append(f"- **{name} {verdict} verify**: agreement {v['agreement_pct']:.2f} %, drop {v['drop_pt']:.2f} pt on "
                     f"{v['n']} test images. {note[len(name) + 2:]}")
    return lines


def gate_lines(report: dict) -> list[str]:
    """One line per artifact: the per-class non-inferiority gate's outcome and the classes not passing."""
    lines = []
    for v in report["verify"]:
        g = v.get("gate")
        if not g:
            lines.append(f"- {v['name']}: gate not run")
            continue
        odd = {c: d["outcome"] for c, d in g["per_class"].items() if d["outcome"] != "pass"}
        lines.append(f"- {v['name']}: **{g['outcome'].upper()}**" + (f" ({', '.join(f'{c}: {o}' for c, o in odd.items())})"
                                                                   if odd else " (every class non-inferior)")
                     + f"; ECE {g['calibration']['artifact_ece']:.3f} vs PyTorch {g['calibration']['reference_ece']:.3f}")
    return lines


def markdown(report: dict, train: dict, command: str, load: tuple[float, float]) -> str:
    from edgekd.export.report import ReportRow, markdown_table

    m = report["machine"]
    isa = ", ".join(k for k, v in m["isa"].items() if v) or "none"
    rows = [ReportRow(**{k: v for k, v in r.items() if k in ReportRow.__dataclass_fields__}) for r in report["artifacts"]]
    others = [v for v in report["verify"] if not v["passed"] and v["precision"] != "int8"]
    return "\n".join([
        "# Quickstart export step (offline preset: Lite2 -> Lite0, Fashion-MNIST stand-in, 64 px)", "",
        f"Command: `{command}` (export of `{report['source_weights']}`; `{report['command']}`)", "",
        f"Training test accuracy (S, from the run's results.json): {train.get('accuracy', 'n/a')}", "",
        f"Machine: {m['cpu_model']}, {m['affinity_cores']} cores ({isa}). Load average start/end {load[0]:.1f} / {load[1]:.1f}"
        + (" (shared with other jobs: latencies are inflated and noisy)." if max(load) > 1.5 else "."), "",
        f"Calibration: {report['calibration']}. INT8 validation: {report['int8_validation']}.", "",
        f"**Deployment pick**: {report.get('pick_headline') or 'none'}", "",
        markdown_table(rows), "", "## INT8 (generated from the report)", *int8_lines(report), "",
        "## Per-class gate vs PyTorch (generated from the report; tables in the export's report.md)", *gate_lines(report), "",
        *([f"Other verify failures: " + "; ".join(f"{v['name']}: {', '.join(v['reasons'])}" for v in others), ""] if others else []),
    ])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a run dir trained with edgekd/configs/lite2_to_lite0_fmnist.yaml")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="quickstart_preset_export")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from edgekd.export.pipeline import ExportRequest, run_export

    load0 = os.getloadavg()[0]
    cmd = ["--run", str(a.run), "--target", "all", "--out", str(a.out)]
    summary = run_export(ExportRequest(run=a.run, target="all", out=a.out, command="edgekd export " + shlex.join(cmd)))
    report = json.loads(summary.report["json"].read_text())
    results = a.run / "results.json"
    train = json.loads(results.read_text()) if results.exists() else {}
    command = "python benchmarks/quickstart_export.py " + shlex.join(argv)
    load = (load0, os.getloadavg()[0])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps({"command": command, "loadavg": load, "train_results": train,
                                                        "report": report}, indent=1, default=str))
    (RESULTS / f"{a.name}.md").write_text(markdown(report, train, command, load))
    print(f"wrote {RESULTS / a.name}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
