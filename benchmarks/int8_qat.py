"""ONNX Runtime INT8 of one run's student: better PTQ, the float budget, and QAT by self-distillation.

Why: on the quickstart student the accuracy-aware ORT search reverted every conv to float and
shipped an FP32 model in an INT8 file (quickstart_preset_export.md). This measures, side by side
on the export's own calibration set and validation halves (training images) and on the test
split: ORT PTQ forms and calibrations, with and without NNCF's fast bias correction ahead of
ORT's quantizer, the stem alone or with the first depthwise conv float, the float-budgeted
search, and quantization-aware self-distillation (`edgekd.export.qat`) followed by ORT's
quantizer and, for the record, NNCF's own Q/DQ ONNX and ORT's fused graph of it. Agreement is
with the PyTorch FP32 student. One command writes the whole results file.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_qat.py --run RUN [--qat-steps 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def setup(run: Path, work: Path, threads: int):
    """The export's own reference, ONNX, calibration and validation (pipeline functions)."""
    from edgekd.export.batches import iter_batches, manifest_items
    from edgekd.export.pipeline import ExportRequest, calibrate, export_reference, make_plan

    req = ExportRequest(run=run, target="onnx", precision="int8", out=work / "export", threads=threads, bench=False)
    plan = make_plan(req)
    ref = export_reference(plan, req)
    int8 = calibrate(plan, req, ref).int8
    items = manifest_items(plan.test_data, plan.src.meta.classes)
    test = [(x, y) for x, y in iter_batches(items, plan.src.meta.preprocess, 64)]
    test_ref = np.concatenate([ref.torch.predict(x) for x, _ in test]).argmax(1)
    return plan, ref, int8, test, test_ref


def measure(name: str, path: Path, fp32_b1: Path, int8, test, test_ref, threads: int, minutes: float) -> dict:
    from edgekd.export.int8_accuracy import paired_batch1_ms, score_predict
    from edgekd.export.int8_share import ort_int8_share
    from edgekd.export.runner import RunnerConfig
    from edgekd.export.runtimes import open_runner

    predict = open_runner(path, RunnerConfig(threads=threads)).predict
    search, check = int8.val.halves()
    pred = np.concatenate([predict(x).argmax(1) for x, _ in test])
    b1 = lambda p: open_runner(p, RunnerConfig(threads=threads, static_batch=1)).predict  # noqa: E731
    fp32_ms, ms = paired_batch1_ms(b1(fp32_b1), b1(path), int8.val.x[:1])
    share = ort_int8_share(path)
    row = {"candidate": name, "search_agree": score_predict(predict, search).agreement_pct,
           "check_agree": score_predict(predict, check).agreement_pct, "test_agree": 100.0 * float(np.mean(pred == test_ref)),
           "int8_share": share.share, "ms": ms, "fp32_ms": fp32_ms, "minutes": minutes}
    print(json.dumps(row), flush=True)
    return row


#: the first depthwise conv: with the stem, the most sensitive part of Lite0 within the float budget
FIRST_DW = "blocks.0.0/conv_dw"
STEM = ("conv_stem",)

#: (format, calibration, keep_float, NNCF fast bias correction first)
PTQ_VARIANTS = [("qoperator", "minmax", (*STEM, "conv_dw"), False), ("qoperator", "minmax", STEM, False),
                ("qoperator", "entropy", STEM, False), ("qoperator", "percentile", STEM, False),
                ("qdq", "minmax", STEM, False),
                ("qoperator", "minmax", STEM, True), ("qoperator", "percentile", STEM, True),
                ("qoperator", "minmax", (*STEM, FIRST_DW), False), ("qoperator", "percentile", (*STEM, FIRST_DW), False),
                ("qoperator", "minmax", (*STEM, FIRST_DW), True), ("qoperator", "percentile", (*STEM, FIRST_DW), True),
                ("qoperator", "mean-minmax", STEM, False), ("qdq", "mean-minmax", STEM, False),
                ("qoperator", "mean-minmax", (*STEM, FIRST_DW), False)]


def ptq_rows(plan, ref, int8, test, test_ref, work: Path, threads: int) -> list[dict]:
    from edgekd.export.ort_quant import OrtQuantConfig, quantize_onnx

    rows = []
    for i, (fmt, method, keep, bias) in enumerate(PTQ_VARIANTS):
        cfg = OrtQuantConfig.for_cpu(quant_format=fmt, calib_method=method, keep_float=keep, bias_correction=bias)
        dst = work / f"ptq_{i}.onnx"
        t0 = time.perf_counter()
        quantize_onnx(ref.onnx.dynamic, dst, int8.calib, plan.src.architecture, cfg)
        label = (f"PTQ {fmt} {method}{' + NNCF bias correction' if bias else ''}, "
                 f"float: {', '.join(keep)}")
        rows.append(measure(label, dst, ref.onnx.static, int8, test, test_ref, threads, (time.perf_counter() - t0) / 60))
    return rows


def search_row(plan, ref, int8, test, test_ref, work: Path, threads: int) -> tuple[dict, str]:
    """What `edgekd export` does: the accuracy-aware search, now with the float budget."""
    from edgekd.export.ort_quant import OrtQuantConfig, quantize_accuracy_aware

    dst = work / "ptq_search.onnx"
    t0 = time.perf_counter()
    q = quantize_accuracy_aware(ref.onnx.dynamic, dst, int8.calib, int8.val, plan.src.architecture,
                                OrtQuantConfig.for_cpu(), int8.goal, threads)
    keep = ", ".join(q.float_op_types or []) or "per-architecture default"
    row = measure(f"PTQ accuracy search ({len(q.search.tries)} tries, float: {keep} + searched)", dst, ref.onnx.static, int8, test, test_ref,
                  threads, (time.perf_counter() - t0) / 60)
    return row, q.search.over_budget or ("target met within budget" if q.search.target_met else "target not met")


def qat_rows(plan, ref, int8, test, test_ref, work: Path, threads: int, steps: int) -> list[dict]:
    import torch

    from edgekd.export import qat
    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx
    from edgekd.export.ort_quant import OrtQuantConfig, quantize_onnx

    torch.set_num_threads(threads)
    search, _ = int8.val.halves()
    t0 = time.perf_counter()
    result = qat.quantization_aware_distill(ref.torch.model, int8.calib, qat.training_images(int8.calib, search.images),
                                            plan.src.architecture, qat.QatConfig(steps=steps))
    qat_min = (time.perf_counter() - t0) / 60
    card = plan.src.meta
    float_onnx = export_onnx(qat.trained_float(result), card, work / "qat_float", OnnxExportConfig(static_batch=0)).dynamic
    rows = []
    for i, keep in enumerate(((*STEM, "conv_dw"), STEM)):
        dst = work / f"qat_ptq_{i}.onnx"
        t1 = time.perf_counter()
        quantize_onnx(float_onnx, dst, int8.calib, plan.src.architecture, OrtQuantConfig.for_cpu(keep_float=keep))
        label = f"QAT {steps} steps + ORT qoperator minmax, float: {', '.join(keep)}"
        rows.append(measure(label, dst, ref.onnx.static, int8, test, test_ref, threads,
                            qat_min + (time.perf_counter() - t1) / 60))
    qdq = qat.export_qdq_onnx(result.model, card, work / "qat.qdq.onnx")
    rows.append(measure(f"QAT {steps} steps, NNCF Q/DQ ONNX", qdq, ref.onnx.static, int8, test, test_ref, threads, qat_min))
    qop = qat.to_qoperator(qdq, work / "qat.qop.onnx")
    rows.append(measure(f"QAT {steps} steps, ORT's fused graph of the Q/DQ ONNX", qop, ref.onnx.static, int8, test,
                        test_ref, threads, qat_min))
    return rows


def markdown(data: dict) -> str:
    lines = [f"# ONNX Runtime INT8: PTQ vs quantization-aware self-distillation ({data['architecture']})", "",
             f"Command: `{data['command']}`", "", f"Machine: {data['machine']}. Shared, loaded box: latencies are noisy; "
             "FP32 is timed beside each candidate (paired rounds).", "",
             "Agreement with the PyTorch FP32 student: search / certification halves of the export's validation slice "
             f"(training images, {data['val_images']} in all), and the test split ({data['test_images']} images).", "",
             f"Accuracy search with the {data['budget']:.0%} float budget: {data['search_verdict']}", "",
             "| candidate | search agree % | cert. agree % | test agree % | INT8 share | ms (b1) | FP32 ms | minutes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['candidate']} | {r['search_agree']:.2f} | {r['check_agree']:.2f} | {r['test_agree']:.2f} | "
                     f"{100 * r['int8_share']:.0f} % | {r['ms']:.2f} | {r['fp32_ms']:.2f} | {r['minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--qat-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="int8_qat")
    a = ap.parse_args(argv)
    from edgekd.export.bench import machine_info
    from edgekd.export.int8_accuracy import MAX_FLOAT_MACS

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        plan, ref, int8, test, test_ref = setup(a.run, work, a.threads)
        rows = ptq_rows(plan, ref, int8, test, test_ref, work, a.threads)
        row, verdict = search_row(plan, ref, int8, test, test_ref, work, a.threads)
        rows += [row, *qat_rows(plan, ref, int8, test, test_ref, work, a.threads, a.qat_steps)]
    m = machine_info()
    data = {"architecture": plan.src.architecture, "command": "python benchmarks/int8_qat.py " + shlex.join(sys.argv[1:]),
            "machine": f"{m.get('cpu_model')}, {m.get('affinity_cores')} cores", "val_images": len(int8.val),
            "test_images": int(sum(len(y) for _, y in test)), "budget": MAX_FLOAT_MACS, "search_verdict": verdict,
            "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps(data, indent=2))
    (RESULTS / f"{a.name}.md").write_text(markdown(data))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
