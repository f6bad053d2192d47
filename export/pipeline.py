"""`edgekd export`: plan -> build -> verify -> bench -> report, one artifact per job.

Why one orchestrator: the order matters (options checked before any work; every artifact
built from the same ONNX, which comes from the same saved weights; one calibration set for
ORT and NNCF; verify streams the test split once through all artifacts). Each target's
build is a call into its own module; a failing build is recorded, not fatal to the others.
"""

from __future__ import annotations

import shlex
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgeKDError
from edgekd.export import options as opt
from edgekd.export.artifacts import Artifact
from edgekd.export.bench import BenchConfig, bench_runner, machine_info
from edgekd.export.report import ReportRow, print_table, write_report
from edgekd.export.runtimes import RunnerConfig, open_runner
from edgekd.export.verify import Thresholds, VerifyResult, verify


@dataclass
class ExportRequest:
    run: Path
    target: str = "all"
    precision: str | None = None
    out: Path | None = None
    data: Path | None = None  # test manifest override (default: the run's data/test.json)
    calib_data: Path | None = None  # calibration manifest override (default: the run's data/train.json)
    calib_size: int | None = None
    calib_method: str | None = None
    quant_format: str | None = None
    keep_float: tuple[str, ...] | None = None
    verify: bool = True
    bench: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    threads: int = 2
    batch_size: int = 32
    bench_iters: int = 50
    opset: int = 20
    # TensorRT
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    command: str = ""

    def given_options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("calib_size", "calib_method", "calib_data", "quant_format", "keep_float",
                                               "min_batch", "opt_batch", "max_batch")}


@dataclass
class ExportSummary:
    artifacts: list[Artifact]
    results: list[VerifyResult]
    rows: list[ReportRow]
    report: dict[str, Path]
    exit_code: int


def run_export(req: ExportRequest, console: bool = True) -> ExportSummary:
    # 1. everything checkable without work
    jobs = opt.plan_jobs(req.target, req.precision)
    opt.check_options(jobs, req.given_options())
    if req.opset < 17:
        raise EdgeKDError(f"--opset {req.opset}: opset >= 17 is required (LayerNormalization as one op)")
    from edgekd.export.source import TorchRunner, resolve_run

    src = resolve_run(req.run)
    test_data = req.data or src.test_manifest
    if req.verify and test_data is None:
        raise EdgeKDError(f"no test manifest in {req.run} (data/test.json); pass --data MANIFEST or --no-verify")
    needs_calib = any(j.precision == "int8" for j in jobs)
    calib_src = req.calib_data or src.train_manifest
    if needs_calib and calib_src is None:
        raise EdgeKDError(f"INT8 needs calibration images: {req.run}/data/train.json is missing; pass --calib-data MANIFEST")
    trt_jobs = [j for j in jobs if j.target == "tensorrt"]
    trt_reason = None
    if trt_jobs:
        from edgekd.export.tensorrt_export import tensorrt_unavailable_reason

        trt_reason = tensorrt_unavailable_reason()
    out = Path(req.out or Path(req.run if Path(req.run).is_dir() else Path(req.run).parent) / "export")
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    artifacts: list[Artifact] = []
    meta = src.meta

    # 2. reference model and the ONNX every target starts from
    torch_runner = TorchRunner(src.weights, threads=req.threads)
    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx

    t0 = time.perf_counter()
    onnx_files = export_onnx(torch_runner.model, meta, out / "onnx", OnnxExportConfig(opset=req.opset))
    onnx_seconds = time.perf_counter() - t0

    calib = None
    if needs_calib:
        from edgekd.export.calibration import CalibrationConfig, build_calibration

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            calib = build_calibration(str(calib_src), meta["preprocess"],
                                      CalibrationConfig(size=req.calib_size or 300))
        notes += [f"calibration: {n}" for n in calib.warnings]
        for w in caught:
            if str(w.message) not in calib.warnings:
                notes.append(f"warning: {w.message}")

    # 3. build each job
    ov_float = None
    for job in jobs:
        art = Artifact(job.name, job.target, job.precision)
        t0 = time.perf_counter()
        try:
            if job.target == "onnx" and job.precision == "fp32":
                art.path, art.latency_path = str(onnx_files.dynamic), str(onnx_files.static or "")
                art.build_seconds = onnx_seconds
            elif job.target == "onnx" and job.precision == "int8":
                from edgekd.export.ort_quant import OrtQuantConfig, quantize_onnx

                qcfg = OrtQuantConfig(quant_format=req.quant_format or "qoperator", calib_method=req.calib_method or "minmax",
                                      keep_float=req.keep_float)
                dst = out / "onnx" / "model.int8.onnx"
                info = quantize_onnx(onnx_files.dynamic, dst, calib, src.architecture, qcfg)
                art.path = str(dst)
                art.notes.append(f"ORT static {info['quant_format']} {info['activation']}/{info['weights']}, "
                                 f"{info['calib_method']} on {info['calib_images']} images, float: {info['kept_float_op_types']}")
            elif job.target == "openvino":
                from edgekd.export import openvino_export as ovx

                if ov_float is None:
                    ov_float = ovx.convert(onnx_files.dynamic)
                dst = out / "openvino" / f"model.{job.precision}.xml"
                if job.precision == "int8":
                    qmodel, info = ovx.quantize_ir(ov_float.clone(), calib, src.architecture)
                    ovx.save_ir(qmodel, dst, "int8")
                    art.notes.append(f"NNCF PTQ ({info['model_type']}) on {info['calib_images']} images")
                else:
                    ovx.save_ir(ov_float.clone(), dst, job.precision)
                art.path = str(dst)
            elif job.target == "tensorrt":
                art = _tensorrt_job(job, art, onnx_files.dynamic, out, calib, src, req, trt_reason)
        except EdgeKDError:
            raise
        except Exception as e:  # noqa: BLE001 - record and continue with the other targets
            art.status, art.reason = "failed", f"{type(e).__name__}: {e}"
            notes.append(f"{job.name} failed: {traceback.format_exc(limit=3)}")
        art.build_seconds = art.build_seconds or time.perf_counter() - t0
        artifacts.append(art)

    # 4. verify (one pass over the test split)
    ok = [a for a in artifacts if a.status == "ok"]
    results: list[VerifyResult] = []
    runners: dict[str, Any] = {}
    if ok and (req.verify or req.bench):
        for a in ok:
            runners[a.name] = open_runner(a.path, RunnerConfig(threads=req.threads))
    test_items = []
    if req.verify and ok:
        from edgekd.export.batches import iter_batches, manifest_items

        test_items = manifest_items(test_data, meta["classes"])
        results = verify({a.name: (runners[a.name], a.precision) for a in ok}, torch_runner,
                         iter_batches(test_items, meta["preprocess"], req.batch_size), req.thresholds)

    # 5. bench (batch-1 latency vs PyTorch eager, same process, same threads)
    bench: dict[str, Any] = {}
    if req.bench and ok:
        c, h, w = meta["preprocess"]["input_size"]
        bcfg = BenchConfig(warmup=5, iters=req.bench_iters, throughput_batch=0, max_seconds=20)
        bench["pytorch"] = bench_runner(torch_runner, (c, h, w), "pytorch-eager", "fp32", bcfg)
        for a in ok:
            lat = open_runner(a.latency_path or a.path, RunnerConfig(threads=req.threads, static_batch=1))
            bench[a.name] = bench_runner(lat, (c, h, w), a.name, a.precision, bcfg, size_mb=a.size_mb)

    rows = _rows(artifacts, results, bench)
    by_name = {r.name: r for r in results}
    failed = [a for a in artifacts if a.status == "failed"] + [a for a in ok if a.name in by_name and not by_name[a.name].passed]
    context = {
        "architecture": src.architecture, "source_weights": str(src.weights), "weights_sha256": meta.get("weights_sha256", ""),
        "test_data": str(test_data), "test_images": len(test_items), "command": req.command,
        "calibration": (f"{len(calib)} images, class-stratified from {calib_src}" if calib is not None else "none"),
        "reference": "PyTorch eager FP32" + (f", p50 {bench['pytorch'].p50_ms:.2f} ms" if "pytorch" in bench else ""),
        "machine": machine_info(), "notes": notes + [f"{a.name}: {n}" for a in artifacts for n in a.notes],
        "verify": [r.to_dict() for r in results], "bench": {k: v.to_dict() for k, v in bench.items()},
        "build": [a.to_dict() for a in artifacts], "thresholds": req.thresholds.__dict__,
    }
    paths = write_report(rows, out, context)
    if console:
        print_table(rows, title=f"edgekd export: {src.architecture} -> {out}")
        for a in failed:
            why = a.reason or "; ".join(by_name[a.name].reasons)
            print(f"FAILED {a.name} ({a.path or 'not built'}): {why}", file=sys.stderr)
        print(f"report: {paths['md']}")
    return ExportSummary(artifacts, results, rows, paths, 1 if failed else 0)


def _tensorrt_job(job: opt.Job, art: Artifact, onnx_fp32: Path, out: Path, calib: Any, src: Any,
                  req: ExportRequest, unavailable: str | None) -> Artifact:
    """Write the ONNX TensorRT consumes (QDQ for int8), then build the engine if possible."""
    from edgekd.export import tensorrt_export as trtx

    src_onnx = onnx_fp32
    if job.precision == "int8":
        from edgekd.export.ort_quant import OrtQuantConfig, quantize_onnx

        src_onnx = out / "tensorrt" / "model.int8.qdq.onnx"
        src_onnx.parent.mkdir(parents=True, exist_ok=True)
        quantize_onnx(onnx_fp32, src_onnx, calib, src.architecture,
                      OrtQuantConfig.for_tensorrt(calib_method=req.calib_method or "minmax", keep_float=req.keep_float))
    if unavailable:
        art.status = "skipped"
        art.reason = f"{unavailable}; ship {src_onnx.name} and run `edgekd export --build-on-device --onnx {src_onnx.name} --precision {job.precision}` on the device"
        return art
    cfg = trtx.TrtBuildConfig(precision=job.precision, min_batch=req.min_batch or 1, opt_batch=req.opt_batch or 1,
                              max_batch=req.max_batch or max(req.batch_size, 1))
    engine = out / "tensorrt" / f"model.{job.precision}.engine"
    trtx.build_engine(src_onnx, engine, cfg)
    art.path = str(engine)
    return art


def _rows(artifacts: list[Artifact], results: list[VerifyResult], bench: dict[str, Any]) -> list[ReportRow]:
    by_name = {r.name: r for r in results}
    ref = bench.get("pytorch")
    rows = []
    if ref is not None:
        rows.append(ReportRow("pytorch-eager", "pytorch", "fp32", p50_ms=ref.p50_ms, speedup_vs_torch=1.0,
                              accuracy=results[0].reference_accuracy if results else None))
    for a in artifacts:
        r = by_name.get(a.name)
        b = bench.get(a.name)
        fmt = {"onnx": "ONNX", "openvino": "OpenVINO IR", "tensorrt": "TensorRT engine"}[a.target]
        rows.append(ReportRow(
            a.name, fmt, a.precision, status=a.status, size_mb=round(a.size_mb, 2) if a.path else None,
            accuracy=r.accuracy if r else None, drop_pt=r.drop_pt if r else None,
            agreement_pct=r.agreement_pct if r else None, max_abs_diff=r.max_abs_diff if r else None,
            mean_kl=r.mean_kl if r else None, p50_ms=b.p50_ms if b else None,
            speedup_vs_torch=(ref.p50_ms / b.p50_ms) if (b and ref) else None,
            passed=r.passed if r else None, reasons=(r.reasons if r else ([a.reason] if a.reason else [])), path=a.path,
        ))
    return rows


def command_line(argv: list[str]) -> str:
    return "edgekd export " + " ".join(shlex.quote(a) for a in argv)
