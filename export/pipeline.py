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

import numpy as np

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
    target: str = "all"  # one target, a comma list (onnx,openvino) or all
    precision: str | None = None
    out: Path | None = None
    data: Path | None = None  # test manifest override (default: the run's data/test.json)
    calib_data: Path | None = None  # calibration manifest override (default: the run's data/train.json)
    calib_size: int | None = None
    calib_method: str | None = None
    quant_format: str | None = None
    keep_float: tuple[str, ...] | None = None
    accuracy_control: bool = True  # INT8: revert the most sensitive nodes to float until the target holds
    val_size: int | None = None  # INT8 validation slice from the training manifest (default 2000)
    verify: bool = True
    bench: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    drift_images: int = 16  # explanation drift (occlusion maps vs PyTorch) on the first N test images; 0 = off
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
                                               "val_size", "min_batch", "opt_batch", "max_batch")}


@dataclass
class ExportSummary:
    artifacts: list[Artifact]
    results: list[VerifyResult]
    rows: list[ReportRow]
    report: dict[str, Path]
    exit_code: int


@dataclass
class _Ctx:
    """Everything the build/verify/bench/report steps share."""

    req: ExportRequest
    jobs: list[opt.Job]
    src: Any
    out: Path
    test_data: Path | None
    calib_src: Path | None
    trt_reason: str | None
    torch_runner: Any = None
    onnx_files: Any = None
    onnx_seconds: float = 0.0
    calib: Any = None
    val: Any = None
    notes: list[str] = field(default_factory=list)
    ov_float: Any = None


def run_export(req: ExportRequest, console: bool = True) -> ExportSummary:
    """Plan (cheap checks first) -> ONNX -> calibration -> build each job -> verify -> bench -> report."""
    ctx = _prepare(req)
    _export_onnx(ctx)
    _calibrate(ctx)
    artifacts = [_build(ctx, job) for job in ctx.jobs]
    ok = [a for a in artifacts if a.status == "ok"]
    results, n_test = _verify(ctx, ok)
    bench = _bench(ctx, ok)
    return _report(ctx, artifacts, results, bench, n_test, console)


def _prepare(req: ExportRequest) -> _Ctx:
    """Everything checkable without work: options, run dir, manifests, calibration/test overlap."""
    jobs = opt.plan_jobs(req.target, req.precision)
    opt.check_options(jobs, req.given_options())
    if req.opset < 17:
        raise EdgeKDError(f"--opset {req.opset}: opset >= 17 is required (LayerNormalization as one op)")
    from edgekd.export.source import resolve_run

    src = resolve_run(req.run)
    test_data = req.data or src.test_manifest
    if req.verify and test_data is None:
        raise EdgeKDError(f"no test manifest in {req.run} (data/test.json); pass --data MANIFEST or --no-verify")
    calib_src = req.calib_data or src.train_manifest
    if any(j.precision == "int8" for j in jobs):
        if calib_src is None:
            raise EdgeKDError(f"INT8 needs calibration images: {req.run}/data/train.json is missing; pass --calib-data MANIFEST")
        from edgekd.export.calibration import refuse_test_overlap

        for m in {calib_src, src.train_manifest} - {None}:
            refuse_test_overlap(m, test_data if test_data and Path(test_data).is_file() else None)
    trt_reason = None
    if any(j.target == "tensorrt" for j in jobs):
        from edgekd.export.tensorrt_export import tensorrt_unavailable_reason

        trt_reason = tensorrt_unavailable_reason()
    out = Path(req.out or Path(req.run if Path(req.run).is_dir() else Path(req.run).parent) / "export")
    out.mkdir(parents=True, exist_ok=True)
    return _Ctx(req, jobs, src, out, test_data, calib_src, trt_reason)


def _export_onnx(ctx: _Ctx) -> None:
    """The reference PyTorch model and the ONNX every target starts from (same saved weights)."""
    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx
    from edgekd.export.source import TorchRunner

    ctx.torch_runner = TorchRunner(ctx.src.weights, threads=ctx.req.threads)
    t0 = time.perf_counter()
    ctx.onnx_files = export_onnx(ctx.torch_runner.model, ctx.src.meta, ctx.out / "onnx", OnnxExportConfig(opset=ctx.req.opset))
    ctx.onnx_seconds = time.perf_counter() - t0


def _calibrate(ctx: _Ctx) -> None:
    """One calibration set for ORT, NNCF and the TensorRT Q/DQ ONNX, and one validation slice
    (training images, not the calibration ones) with the PyTorch logits the INT8 search aims at."""
    if not any(j.precision == "int8" for j in ctx.jobs):
        return
    from edgekd.export.calibration import CalibrationConfig, build_calibration, build_validation
    from edgekd.export.int8_accuracy import ValidationSet

    pp = ctx.src.meta["preprocess"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ctx.calib = build_calibration(str(ctx.calib_src), pp, CalibrationConfig(size=ctx.req.calib_size or 300))
    ctx.notes += [f"calibration: {n}" for n in ctx.calib.warnings]
    ctx.notes += [f"warning: {w.message}" for w in caught if str(w.message) not in ctx.calib.warnings]
    if ctx.req.accuracy_control:  # the run's training split, even when --calib-data overrides calibration
        val_src = ctx.src.train_manifest or ctx.calib_src
        images = build_validation(str(val_src), pp, ctx.req.val_size or 2000, ctx.calib.paths)
        ctx.notes += [f"INT8 validation: {n}" for n in images.warnings]
        ref = np.concatenate([ctx.torch_runner.predict(images.x[i : i + 32]) for i in range(0, len(images), 32)])
        ctx.val = ValidationSet(images, ref)


def _build(ctx: _Ctx, job: opt.Job) -> Artifact:
    """Build one artifact; a failure is recorded (the report says why), not fatal to the others."""
    art = Artifact(job.name, job.target, job.precision)
    t0 = time.perf_counter()
    try:
        {"onnx": _onnx_job, "openvino": _openvino_job, "tensorrt": _tensorrt_job}[job.target](ctx, job, art)
    except EdgeKDError:
        raise
    except Exception as e:  # noqa: BLE001 - record and continue with the other targets
        art.status, art.reason = "failed", f"{type(e).__name__}: {e}"
        ctx.notes.append(f"{job.name} failed: {traceback.format_exc(limit=3)}")
    art.build_seconds = art.build_seconds or time.perf_counter() - t0
    return art


def _int8_target(ctx: _Ctx) -> Any:
    from edgekd.export.int8_accuracy import AccuracyTarget

    return AccuracyTarget.from_thresholds(ctx.req.thresholds, len(ctx.val))


def _onnx_job(ctx: _Ctx, job: opt.Job, art: Artifact) -> None:
    if job.precision == "fp32":
        art.path, art.latency_path = str(ctx.onnx_files.dynamic), str(ctx.onnx_files.static or "")
        art.build_seconds = ctx.onnx_seconds
        return
    from edgekd.export.ort_quant import OrtQuantConfig, quantize_accuracy_aware, quantize_onnx

    qcfg = OrtQuantConfig.for_cpu(quant_format=ctx.req.quant_format, calib_method=ctx.req.calib_method or "minmax",
                                  keep_float=ctx.req.keep_float)
    dst = ctx.out / "onnx" / "model.int8.onnx"
    if ctx.val is not None:
        info = quantize_accuracy_aware(ctx.onnx_files.dynamic, dst, ctx.calib, ctx.val, ctx.src.architecture, qcfg,
                                       _int8_target(ctx), ctx.req.threads)
    else:
        info = quantize_onnx(ctx.onnx_files.dynamic, dst, ctx.calib, ctx.src.architecture, qcfg)
    art.path = str(dst)
    n_float, n_compute = info["float_compute_nodes"], info["compute_nodes"]
    mostly_float = (f"MOSTLY FLOAT: {n_float} of {n_compute} Conv/MatMul/Gemm nodes stay float, so this artifact "
                    "runs mostly in FP32 (openvino-int8 may quantize this model better); " if 2 * n_float > n_compute else "")
    art.notes.append(f"{mostly_float}ORT static {info['quant_format']} {info['activation']}/{info['weights']}"
                     f"{', reduce_range' if info['reduce_range'] else ''}, {info['calib_method']} on {info['calib_images']} "
                     f"images; fusions: {info['fusions'] or 'none'}; float op types: {info['kept_float_op_types']}; "
                     f"float nodes ({len(info['float_nodes'])}; {n_float} of {n_compute} Conv/MatMul/Gemm): {info['float_nodes']}"
                     + _search_note(info))


def _openvino_job(ctx: _Ctx, job: opt.Job, art: Artifact) -> None:
    from edgekd.export import openvino_export as ovx

    if ctx.ov_float is None:
        ctx.ov_float = ovx.convert(ctx.onnx_files.dynamic)
    dst = ctx.out / "openvino" / f"model.{job.precision}.xml"
    if job.precision == "int8":
        if ctx.val is not None:
            qmodel, info = ovx.quantize_accuracy_aware(ctx.ov_float.clone(), ctx.calib, ctx.val, ctx.src.architecture,
                                                       _int8_target(ctx), threads=ctx.req.threads)
        else:
            qmodel, info = ovx.quantize_ir(ctx.ov_float.clone(), ctx.calib, ctx.src.architecture)
        ovx.save_ir(qmodel, dst, "int8")
        art.notes.append(f"NNCF PTQ ({info['model_type']}) on {info['calib_images']} images; "
                         f"float nodes added by accuracy control ({len(info.get('float_nodes', []))}): "
                         f"{info.get('float_nodes', [])}" + _search_note(info))
    else:
        ovx.save_ir(ctx.ov_float.clone(), dst, job.precision)
    art.path = str(dst)


def _search_note(info: dict) -> str:
    """What the accuracy-aware search did and what its float nodes cost in batch-1 latency."""
    if "search_steps" not in info:
        return "; accuracy control off"
    a, b = info["latency_all_int8_ms"], info["latency_ms"]
    verdict = "met" if info["target_met"] else "NOT met (no candidate reached it; see verify)"
    tries = [f"{s['validation']} / {s['certification']}" for s in info["search_steps"]]
    return (f"; searched on {info['validation_images']} training images: {info['validation']}; certified on "
            f"{info['certification_images']} other training images: {info['certification']} (target {info['target']}: "
            f"{verdict}); tries (search / certification): {tries}; batch-1 latency all-INT8 {a:.2f} ms -> {b:.2f} ms "
            f"shipped ({b - a:+.2f} ms for the float nodes)")


def _verify(ctx: _Ctx, ok: list[Artifact]) -> tuple[list[VerifyResult], int]:
    """One pass over the test split through every built artifact."""
    if not (ctx.req.verify and ok):
        return [], 0
    from edgekd.export.batches import iter_batches, manifest_items

    items = manifest_items(ctx.test_data, ctx.src.meta["classes"])
    runners = {a.name: (open_runner(a.path, RunnerConfig(threads=ctx.req.threads)), a.precision) for a in ok}
    return verify(runners, ctx.torch_runner, iter_batches(items, ctx.src.meta["preprocess"], ctx.req.batch_size),
                  ctx.req.thresholds, drift_images=ctx.req.drift_images), len(items)


def _bench(ctx: _Ctx, ok: list[Artifact]) -> dict[str, Any]:
    """Batch-1 latency vs PyTorch eager, same process, same threads."""
    if not (ctx.req.bench and ok):
        return {}
    c, h, w = ctx.src.meta["preprocess"]["input_size"]
    bcfg = BenchConfig(warmup=5, iters=ctx.req.bench_iters, throughput_batch=0, max_seconds=20)
    bench = {"pytorch": bench_runner(ctx.torch_runner, (c, h, w), "pytorch-eager", "fp32", bcfg)}
    for a in ok:
        lat = open_runner(a.latency_path or a.path, RunnerConfig(threads=ctx.req.threads, static_batch=1))
        bench[a.name] = bench_runner(lat, (c, h, w), a.name, a.precision, bcfg, size_mb=a.size_mb)
    return bench


def _report(ctx: _Ctx, artifacts: list[Artifact], results: list[VerifyResult], bench: dict[str, Any], n_test: int,
            console: bool) -> ExportSummary:
    ok = [a for a in artifacts if a.status == "ok"]
    rows = _rows(artifacts, results, bench)
    by_name = {r.name: r for r in results}
    failed = [a for a in artifacts if a.status == "failed"] + [a for a in ok if a.name in by_name and not by_name[a.name].passed]
    src, calib = ctx.src, ctx.calib
    context = {
        "architecture": src.architecture, "source_weights": str(src.weights), "weights_sha256": src.meta.get("weights_sha256", ""),
        "test_data": str(ctx.test_data), "test_images": n_test, "command": ctx.req.command,
        "calibration": (f"{len(calib)} images, class-stratified from {ctx.calib_src}" if calib is not None else "none"),
        "int8_validation": (f"{len(ctx.val)} training images (not calibration, never test; half to search, half to "
                            "certify) from "
                            f"{ctx.src.train_manifest or ctx.calib_src}"
                            if ctx.val is not None else "none"),
        "reference": "PyTorch eager FP32" + (f", p50 {bench['pytorch'].p50_ms:.2f} ms" if "pytorch" in bench else ""),
        "machine": machine_info(), "notes": ctx.notes + [f"{a.name}: {n}" for a in artifacts for n in a.notes],
        "verify": [r.to_dict() for r in results], "bench": {k: v.to_dict() for k, v in bench.items()},
        "build": [a.to_dict() for a in artifacts], "thresholds": ctx.req.thresholds.__dict__,
    }
    paths = write_report(rows, ctx.out, context)
    if console:
        print_table(rows, title=f"edgekd export: {src.architecture} -> {ctx.out}")
        for a in failed:
            why = a.reason or "; ".join(by_name[a.name].reasons)
            print(f"FAILED {a.name} ({a.path or 'not built'}): {why}", file=sys.stderr)
        print(f"report: {paths['md']}")
    return ExportSummary(artifacts, results, rows, paths, 1 if failed else 0)


def _tensorrt_job(ctx: _Ctx, job: opt.Job, art: Artifact) -> None:
    """Write the ONNX TensorRT consumes (symmetric Q/DQ for int8), then build the engine if possible."""
    from edgekd.export import tensorrt_export as trtx

    src_onnx = ctx.onnx_files.dynamic
    if job.precision == "fp16":  # strongly typed TensorRT takes FP16 from the ONNX itself
        src_onnx = trtx.write_fp16_onnx(ctx.onnx_files.dynamic, ctx.out / "tensorrt" / "model.fp16.onnx")
    if job.precision == "int8":
        from edgekd.export.ort_quant import OrtQuantConfig, quantize_onnx

        src_onnx = ctx.out / "tensorrt" / "model.int8.qdq.onnx"
        src_onnx.parent.mkdir(parents=True, exist_ok=True)
        quantize_onnx(ctx.onnx_files.dynamic, src_onnx, ctx.calib, ctx.src.architecture,
                      OrtQuantConfig.for_tensorrt(calib_method=ctx.req.calib_method or "minmax", keep_float=ctx.req.keep_float))
    if ctx.trt_reason:
        art.status = "skipped"
        art.reason = (f"{ctx.trt_reason}; ship {src_onnx.name} and run `edgekd export --build-on-device --onnx "
                      f"{src_onnx.name} --precision {job.precision}` on the device")
        return
    req = ctx.req
    cfg = trtx.TrtBuildConfig(precision=job.precision, min_batch=req.min_batch or 1, opt_batch=req.opt_batch or 1,
                              max_batch=req.max_batch or max(req.batch_size, 1))
    engine = ctx.out / "tensorrt" / f"model.{job.precision}.engine"
    trtx.build_engine(src_onnx, engine, cfg)
    art.path = str(engine)


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
            mean_kl=r.mean_kl if r else None, map_rank_corr=r.map_rank_corr if r else None, p50_ms=b.p50_ms if b else None,
            speedup_vs_torch=(ref.p50_ms / b.p50_ms) if (b and ref) else None,
            passed=r.passed if r else None, reasons=(r.reasons if r else ([a.reason] if a.reason else [])), path=a.path,
        ))
    return rows


def command_line(argv: list[str]) -> str:
    return "edgekd export " + " ".join(shlex.quote(a) for a in argv)
