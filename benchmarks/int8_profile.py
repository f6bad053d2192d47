"""Where does an INT8 artifact spend its time? Per-op profile of ONNX Runtime and OpenVINO, batch 1.

Why: export_cpu.md measures how much faster INT8 is than PyTorch eager; when a model misses the
speed goal, this says why. It times every op with the runtime's own profiler (ORT
`enable_profiling`, OpenVINO `PERF_COUNT`), splits the time into ops that run in INT8 and ops
that stay float (LayerNorm, Softmax, GELU, attention's activation x activation MatMuls,
re-quantization), and gives the Amdahl bound: the speed-up over the artifact's own time if every
INT8 op took zero time.

    .venv/bin/python benchmarks/int8_profile.py --artifacts ViT-T=RUN/bench_export [--iters 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: an artifact spending at least this share of its profiled time in INT8 kernels is bound by them
INT8_BOUND_PCT = 75.0
INT8_ORT_OPS = ("QLinear", "QGemm", "MatMulInteger", "ConvInteger", "DynamicQuantize", "QAttention")


def ort_profile(path: Path, x: np.ndarray, iters: int, threads: int) -> dict[str, float]:
    """ms per call by op type, from ORT's node-level profiler (kernel time only)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    warm = 10
    for _ in range(warm + iters):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    after = runs[warm - 1]["ts"] + runs[warm - 1]["dur"]  # count only the timed calls, not the warm-up
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] > after:
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / (len(runs) - warm)
    return dict(per_op)


def ov_profile(path: Path, x: np.ndarray, iters: int, threads: int) -> dict[str, float]:
    """ms per call by "node type [precision]", from OpenVINO's PERF_COUNT (f32 pinned, as the INT8 claim)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32",
                                                          "INFERENCE_NUM_THREADS": threads})
    req = compiled.create_infer_request()
    for _ in range(10):
        req.infer({0: x})
    per_op: dict[str, float] = defaultdict(float)
    for _ in range(iters):
        req.infer({0: x})
        for p in req.profiling_info:
            if p.status.name == "EXECUTED":
                prec = "I8" if ("i8" in p.exec_type.lower() or "u8" in p.exec_type.lower()) else "float"  # brgemm_avx512_i8
                per_op[f"{p.node_type} [{prec}]"] += p.real_time.total_seconds() * 1e3 / iters
    return dict(per_op)


def is_int8(op: str) -> bool:
    return op.endswith("[I8]") or op.startswith(INT8_ORT_OPS)


def summarize(label: str, runtime: str, per_op: dict[str, float]) -> dict:
    total = sum(per_op.values())
    int8 = sum(v for k, v in per_op.items() if is_int8(k))
    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:8]
    return {"model": label, "runtime": runtime, "profiled_ms": round(total, 3), "int8_ms": round(int8, 3),
            "float_ms": round(total - int8, 3), "int8_share_pct": round(100 * int8 / max(total, 1e-9), 1),
            "amdahl_bound_x": round(total / max(total - int8, 1e-9), 2),
            "top_ops": [(k, round(v, 3), round(100 * v / max(total, 1e-9), 1)) for k, v in top]}


def bound(row: dict, isa: dict) -> str:
    """What bounds the artifact's latency, read off its profile: the INT8 kernels themselves (then only faster
    INT8 hardware or fewer MACs moves it) or the float ops and conversions around them."""
    if row["int8_share_pct"] >= INT8_BOUND_PCT:
        hw = ("this CPU's AMX tiles" if isa.get("amx_int8") else
              "this CPU's VNNI units (or AMX int8 tiles, on CPUs that have them)")
        return f"Bound by its INT8 kernels: {hw}, or fewer MACs, would move it; the float remainder cannot."
    return ("Bound by the float ops and conversions around the INT8 kernels: fewer of them (fusion, fewer Q/DQ) "
            "would move it more than faster INT8 kernels.")


def markdown(rows: list[dict], command: str, machine: dict) -> str:
    isa = ", ".join(k for k, v in machine["isa"].items() if v) or "none"
    lines = ["# Where INT8 artifacts spend their time (batch 1, per-op profile)", "", f"Command: `{command}`", "",
             f"Machine: {machine['cpu_model']} ({isa}). Profiler times are kernel times (ORT) and node times (OpenVINO, "
             "f32 pinned); they exclude the runtime's own overhead. \"INT8\" = kernels that run on 8-bit data (OpenVINO "
             "exec types ending in i8/u8, incl. data movement such as Transpose; ORT QLinear*, QGemm, *Integer); "
             "everything else runs in float. Absolute times move with the load on this shared VM (compare the p50s in "
             "export_cpu.md); the shares are what this table is for.", "", "## Findings (generated from the rows below)", ""]
    for r in rows:
        top = ", ".join(f"{k} {p} %" for k, _, p in r["top_ops"][:5])
        lines.append(f"- **{r['model']} {r['runtime']}**: {r['profiled_ms']} ms profiled, {r['int8_share_pct']} % of it in INT8 "
                     f"ops and {r['float_ms']} ms in ops that stay float. Even if every INT8 op took no time, this artifact "
                     f"could get only {r['amdahl_bound_x']}x faster than it is. Largest: {top}. {bound(r, machine['isa'])}")
    lines += ["", "| model | runtime | profiled ms | INT8 ms | float ms | INT8 share % | bound if INT8 were free |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['runtime']} | {r['profiled_ms']} | {r['int8_ms']} | {r['float_ms']} | {r['int8_share_pct']} | "
              f"{r['amdahl_bound_x']}x |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", nargs="+", required=True,
                    help="LABEL=DIR: an export folder with onnx/model.int8.onnx and openvino/model.int8.xml")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="int8_profile", help="results/NAME.json + .md")
    a = ap.parse_args(argv)
    from edgekd.export.bench import machine_info
    from edgekd.export.metadata import read_metadata

    rows = []
    for label, d in (kv.split("=", 1) for kv in a.artifacts):
        onnx_path, ov_path = Path(d) / "onnx" / "model.int8.onnx", Path(d) / "openvino" / "model.int8.xml"
        c, h, w = read_metadata(onnx_path)["input_size"]
        x = np.random.default_rng(0).standard_normal((1, c, h, w)).astype(np.float32)
        rows.append(summarize(label, "onnxruntime", ort_profile(onnx_path, x, a.iters, a.threads)))
        rows.append(summarize(label, "openvino", ov_profile(ov_path, x, a.iters, a.threads)))
        print(rows[-2], rows[-1], sep="\n", flush=True)
    command = "python benchmarks/int8_profile.py " + shlex.join(argv)
    machine = machine_info()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.out}.json").write_text(json.dumps({"command": command, "machine": machine, "rows": rows}, indent=1))
    (RESULTS / f"{a.out}.md").write_text(markdown(rows, command, machine))
    print(f"wrote {RESULTS / a.out}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
