"""OpenVINO INT8 of a trained student: which NNCF settings let the first plain PTQ pass, and what that saves.

The export's OpenVINO INT8 (`edgekd.export.openvino_export.quantize_accuracy_aware`) tries plain NNCF
PTQ first and runs NNCF's accuracy control only when that misses the goal on the search half or fails
the certification half; accuracy control ranks every quantizer (a compile per quantizer), the
quickstart export's longest step. Here the same run is quantized with the family's kept-float layers
(EfficientNet: the stem and the first depthwise conv, as in ONNX Runtime) on/off and NNCF's overflow fix
(7-bit weights in the first quantized layer, for pre-VNNI CPUs) on/off: for each, the plain PTQ's
agreement on both halves, then the whole accuracy-aware build (what `edgekd export` runs) with its tries,
INT8 share and seconds.

    .venv/bin/python benchmarks/quickstart_ov_int8.py --run runs/quickstart/train
Writes benchmarks/results/quickstart_ov_int8.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from export_cpu import _calibration  # noqa: E402
from results_io import write_results  # noqa: E402

#: (label, keep_float_layers override (None = the family's), overflow_fix)
VARIANTS = [("all INT8, overflow fix on (NNCF's defaults)", (), True),
            ("family layers float, overflow fix on", None, True),
            ("all INT8, overflow fix off", (), False),
            ("family layers float, overflow fix off", None, False)]


def measure(model, calib, val, architecture: str, target, layers, overflow_fix: bool, threads: int) -> dict:
    from edgekd.export import openvino_export as ovx
    from edgekd.export.int8_accuracy import search_and_check
    from edgekd.export.int8_share import openvino_int8_share

    cfg = ovx.OpenVINOQuantConfig(keep_float_layers=layers, overflow_fix=overflow_fix)
    _, goal, _, pass_check = search_and_check(val, target)
    t = time.perf_counter()
    q, report = ovx.quantize_accuracy_aware(model.clone(), calib, val, architecture, target, cfg, threads)
    seconds = time.perf_counter() - t
    first = report.search.tries[0]  # the plain PTQ the build starts from, scored on both halves
    s, c = first.search, first.certification
    with tempfile.TemporaryDirectory() as d:
        share = openvino_int8_share(ovx.save_ir(q, Path(d) / "model.int8.xml", "int8")).share
    return {"ptq_search_pct": float(s.agreement_pct), "ptq_certification_pct": float(c.agreement_pct),
            "ptq_passes": bool(s.meets(goal) and c.meets(pass_check)), "goal_pct": goal.min_agreement_pct,
            "certification_bar_pct": pass_check.min_agreement_pct, "tries": len(report.search.tries),
            "shipped_certification_pct": float(report.search.shipped.certification.agreement_pct),
            "int8_share": round(share, 4), "accuracy_aware_s": round(seconds, 1)}


def markdown(res: dict) -> str:
    lines = ["# OpenVINO INT8 of the quickstart student: settings that let plain PTQ pass", "",
             f"Command: `{res['command']}`", "", f"Machine: {res['cpu']}; {res['threads']} threads; load average "
             f"{res['load'][0]:.2f} / {res['load'][1]:.2f}. Run: {res['run']} ({res['architecture']}); "
             f"family kept-float layers: {', '.join(res['family_layers']) or 'none'}; validation "
             f"{res['validation_images']} images (search / certification halves).", "",
             "| setting | PTQ search % | PTQ certification % | PTQ passes | tries | shipped certification % | INT8 share | "
             "accuracy-aware build s |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['ptq_search_pct']:.1f} (goal {r['goal_pct']:g}) | {r['ptq_certification_pct']:.1f} "
              f"(bar {r['certification_bar_pct']:g}) | {r['ptq_passes']} | {r['tries']} | {r['shipped_certification_pct']:.1f} | "
              f"{100 * r['int8_share']:.0f} % | {r['accuracy_aware_s']} |" for r in res["rows"]]
    base, new = res["rows"][0], res["rows"][-1]
    lines += ["", f"With the family's layers float and the overflow fix off (the defaults where the CPU has VNNI), "
              f"plain PTQ {'passes' if new['ptq_passes'] else 'does not pass'}: the build takes {new['accuracy_aware_s']} s "
              f"against {base['accuracy_aware_s']} s with NNCF's defaults ({new['tries']} vs {base['tries']} tries)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="trainer run directory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-size", type=int, default=None, help="default: the export's")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from edgekd.export import openvino_export as ovx
    from edgekd.export.bench import cpu_info
    from edgekd.export.calibration import DEFAULT_CALIB_SIZE
    from edgekd.export.int8_accuracy import AccuracyTarget
    from edgekd.export.onnx_export import export_onnx
    from edgekd.export.ort_quant import keep_float_layers
    from edgekd.export.source import TorchRunner, resolve_run
    from edgekd.export.verify import Thresholds

    load0, src = os.getloadavg()[0], resolve_run(a.run)
    runner = TorchRunner(src.weights, a.threads)
    calib, val = _calibration(src, a.calib_size or DEFAULT_CALIB_SIZE, runner)
    target = AccuracyTarget.from_thresholds(Thresholds(), len(val))
    with tempfile.TemporaryDirectory() as d:
        model = ovx.convert(export_onnx(runner.model, src.meta, Path(d)).dynamic)
    rows = []
    for label, layers, fix in VARIANTS:
        rows.append({"label": label, **measure(model, calib, val, src.architecture, target, layers, fix, a.threads)})
        print(rows[-1], flush=True)
    cpu = cpu_info()
    res = {"command": "python benchmarks/quickstart_ov_int8.py" + "".join(f" {x}" for x in (argv or sys.argv[1:])),
           "cpu": f"{cpu['cpu_model']} ({', '.join(k for k, v in cpu['isa'].items() if v)})", "threads": a.threads,
           "load": (load0, os.getloadavg()[0]), "run": str(a.run), "architecture": src.architecture,
           "family_layers": list(keep_float_layers(src.architecture)), "validation_images": len(val), "rows": rows}
    write_results(a.results_dir, "quickstart_ov_int8", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
