"""`edgekd bench` vs OpenVINO's `benchmark_app` on the same IR: batch-1 latency and batch-32 throughput.

Why: `edgekd bench` numbers end up in reports and READMEs; OpenVINO's own tool is the
independent reference. Both sides run on this machine in one process tree, interleaved for
`--rounds` rounds (best of each side, which filters other processes on a shared box), with the
same thread count and f32 inference precision:
- latency: edgekd = static batch 1, LATENCY hint, synchronous calls (p50); benchmark_app =
  `-hint none -nstreams 1 -nireq 1 -nthreads T -api sync -b 1` (median);
- throughput: edgekd = `measure_throughput` (static batch, THROUGHPUT hint, async requests);
  benchmark_app = `-hint throughput -b 32` (its FPS, images/s).
Agreement target: within 15 % on both. Default artifact: ViT-T (timm init; speed does not
depend on the weights) exported by edgekd at 224 px, FP32 IR and NNCF INT8 IR.

    .venv/bin/python benchmarks/bench_vs_benchmark_app.py [--artifacts A.xml B.xml] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARK_APP = Path(sys.executable).with_name("benchmark_app")


def default_artifacts(work: Path) -> list[Path]:
    """ViT-T at 224: ONNX -> OpenVINO FP32 IR and NNCF INT8 IR (calibrated on random images)."""
    fp32, int8 = work / "openvino" / "model.fp32.xml", work / "openvino" / "model.int8.xml"
    if fp32.exists() and int8.exists():
        return [fp32, int8]
    import timm
    import torch

    from edgekd.export import openvino_export as ovx
    from edgekd.export.calibration import CalibrationSet
    from edgekd.export.onnx_export import export_onnx
    from edgekd.shared.card import StudentCard

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10).eval()
    card = StudentCard("vit_tiny_patch16_224", 10, [str(i) for i in range(10)],
                       preprocess={"input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.5] * 3})
    onnx = export_onnx(model, card, work / "onnx").dynamic
    ov_model = ovx.convert(onnx)
    ovx.save_ir(ov_model.clone(), fp32, "fp32")
    x = np.random.default_rng(0).standard_normal((64, 3, 224, 224), dtype=np.float32)
    q, _ = ovx.quantize_ir(ov_model.clone(), CalibrationSet(x, np.zeros(64), ["random"] * 64), card.architecture)
    ovx.save_ir(q, int8, "int8")
    return [fp32, int8]


def edgekd_side(xml: Path, threads: int, batch: int, seconds: float) -> dict:
    from edgekd.export.bench import BenchConfig, bench_runner, measure_throughput
    from edgekd.export.runner import RunnerConfig
    from edgekd.export.runtimes import open_runner

    r = open_runner(xml, RunnerConfig(threads=threads, static_batch=1, inference_precision="f32"))
    lat = bench_runner(r, tuple(r.input_shape[1:]), cfg=BenchConfig(warmup=20, iters=200, max_seconds=seconds))
    tp = measure_throughput(xml, batch, threads, "f32", seconds)
    return {"latency_ms": lat.p50_ms, "throughput_ips": tp.ips, "requests": tp.requests, "streams": tp.streams}


def benchmark_app(xml: Path, args: list[str], seconds: float) -> dict:
    cmd = [str(BENCHMARK_APP), "-m", str(xml), "-d", "CPU", "-t", str(int(seconds)), "-infer_precision", "f32", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    med = re.search(r"Median:\s+([0-9.]+) (ms|us)", out)  # benchmark_app switches to us below 1 ms
    fps = re.search(r"Throughput:\s+([0-9.]+) FPS", out)
    if not (med and fps):
        raise RuntimeError(f"could not parse benchmark_app output of {' '.join(cmd)}:\n{out[-2000:]}")
    return {"latency_ms": float(med.group(1)) / (1000.0 if med.group(2) == "us" else 1.0), "throughput_ips": float(fps.group(1)), "command": shlex.join(cmd[1:])}


def compare(xml: Path, threads: int, batch: int, seconds: float, rounds: int) -> dict:
    """Best of `rounds` interleaved rounds per side: lowest latency, highest throughput."""
    lat_args = ["-hint", "none", "-nstreams", "1", "-nireq", "1", "-nthreads", str(threads), "-api", "sync", "-b", "1"]
    tp_args = ["-hint", "throughput", "-b", str(batch)]
    runs: dict[str, list[dict]] = {"edgekd": [], "app_latency": [], "app_throughput": []}
    for _ in range(rounds):
        runs["edgekd"].append(edgekd_side(xml, threads, batch, seconds))
        runs["app_latency"].append(benchmark_app(xml, lat_args, seconds))
        runs["app_throughput"].append(benchmark_app(xml, tp_args, seconds))
    e_lat = min(r["latency_ms"] for r in runs["edgekd"])
    e_tp = max(r["throughput_ips"] for r in runs["edgekd"])
    a_lat = min(r["latency_ms"] for r in runs["app_latency"])
    a_tp = max(r["throughput_ips"] for r in runs["app_throughput"])
    return {
        "artifact": str(xml), "batch": batch, "threads": threads, "rounds": runs,
        "edgekd_latency_ms": round(e_lat, 3), "benchmark_app_latency_ms": round(a_lat, 3),
        "latency_ratio": round(e_lat / a_lat, 3), "edgekd_throughput_ips": round(e_tp, 1),
        "benchmark_app_throughput_ips": round(a_tp, 1), "throughput_ratio": round(e_tp / a_tp, 3),
        "within_15pct": bool(abs(e_lat / a_lat - 1) <= 0.15 and abs(e_tp / a_tp - 1) <= 0.15),
        "benchmark_app_commands": [runs["app_latency"][0]["command"], runs["app_throughput"][0]["command"]],
    }


def markdown(rows: list[dict], machine: dict, command: str, load: tuple[float, float]) -> str:
    isa = ", ".join(k for k, v in machine["isa"].items() if v) or "none"
    ok = sum(r["within_15pct"] for r in rows)
    lines = [
        "# `edgekd bench` vs OpenVINO `benchmark_app`, same IR", "",
        f"Command: `{command}`", "",
        f"Machine: {machine['cpu_model']}, {machine['affinity_cores']} cores ({isa}); OpenVINO {machine['runtimes']['openvino']}. "
        f"Load average before/after: {load[0]:.1f} / {load[1]:.1f} on {machine['logical_cores']} cores"
        + (" (the machine was shared with other jobs: absolute numbers are low, ratios are side by side)." if max(load) > 1.5 else "."),
        "", "| artifact | edgekd p50 ms | benchmark_app median ms | ratio | edgekd img/s @b | benchmark_app FPS @b | ratio | within 15 % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {Path(r['artifact']).name} | {r['edgekd_latency_ms']} | {r['benchmark_app_latency_ms']} | {r['latency_ratio']} "
                     f"| {r['edgekd_throughput_ips']} @{r['batch']} | {r['benchmark_app_throughput_ips']} @{r['batch']} "
                     f"| {r['throughput_ratio']} | {'yes' if r['within_15pct'] else 'NO'} |")
    lines += ["", f"Result: {ok} of {len(rows)} artifacts agree within 15 % on both latency and throughput.",
              "benchmark_app commands: " + "; ".join(f"`benchmark_app {c}`" for c in rows[0]["benchmark_app_commands"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", nargs="*", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekd_bench_vs_app"))
    ap.add_argument("--out", default="bench_vs_benchmark_app")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from edgekd.export.bench import machine_info

    load0 = os.getloadavg()[0]
    arts = a.artifacts or default_artifacts(a.work)
    rows = []
    for xml in arts:
        t0 = time.perf_counter()
        rows.append(compare(xml, a.threads, a.batch, a.seconds, a.rounds))
        print(f"{xml.name}: latency ratio {rows[-1]['latency_ratio']}, throughput ratio {rows[-1]['throughput_ratio']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    machine = machine_info()
    command = "python benchmarks/bench_vs_benchmark_app.py " + shlex.join(argv)
    load = (load0, os.getloadavg()[0])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.out}.json").write_text(json.dumps({"command": command, "machine": machine, "loadavg": load,
                                                       "rows": rows}, indent=1))
    (RESULTS / f"{a.out}.md").write_text(markdown(rows, machine, command, load))
    print(f"wrote {RESULTS / a.out}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
