"""`edgekd export`: plan -> ONNX -> calibrate -> build each target -> verify -> bench -> report.

Why one orchestrator: the order matters (options checked before any work; every artifact is
built from the same ONNX, which comes from the same saved weights; one calibration set for
every INT8 artifact; verify streams the test split once through all artifacts). Each step
takes what it needs and returns a small result; what differs between formats lives in the
registered targets (`edgekd.export.targets`). A target whose build fails is recorded and the
others go on; an EdgeKDError (bad user input) still stops the export.
"""

from __future__ import annotations

import shlex
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.errors import EdgeKDError
from edgekd.export.artifacts import Artifact
from edgekd.export.bench import BenchConfig, BenchResult, bench_runner, machine_info
from edgekd.export.calibration import DEFAULT_CALIB_SIZE, DEFAULT_VAL_SIZE
from edgekd.export.operating_point import ChosenPoint, PointRequest, choose_point, stamp
from edgekd.export.options import Job, check_options, plan_jobs
from edgekd.export.pick import Candidate, Pick, choose, deploy_pick, export_candidates, no_pick, slower_int8
from edgekd.export.progress import bar, stage
from edgekd.export.publish import publish, refuse_other_run, staging_dir
from edgekd.export.report import ReportRow, print_table, write_report
from edgekd.export.runner import RunnerConfig
from edgekd.export.runtimes import open_runner, open_to_verify
from edgekd.export.targets import CALIB_DATA, CALIB_SIZE, TARGETS, VAL_SIZE, BuildInputs, Int8Inputs, Target
from edgekd.export.verify import Thresholds, VerifyResult, operating_point_markdown, verify
from edgekd.shared.logs import folded_logs

if TYPE_CHECKING:
    from edgekd.export.onnx_export import OnnxExport
    from edgekd.export.source import RunSource, TorchRunner


@dataclass
class ExportRequest:
    run: Path
    target: str = "all"  # one target, a comma list (onnx,openvino) or all
    precision: str | None = None
    out: Path | None = None
    data: Path | None = None  # test manifest override (default: the run's data/test.json)
    options: dict[str, object] = field(default_factory=dict)  # the targets' options: Option.name -> value (None = not given)
    accuracy_control: bool = True  # INT8: revert the most sensitive nodes to float until the target holds
    verify: bool = True
    bench: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    drift_images: int = 16  # explanation drift (occlusion maps vs PyTorch) on the first N test images; 0 = off
    threads: int = 2
    batch_size: int = 32
    bench_iters: int = 50
    opset: int = 20
    overwrite: bool = False  # replace an --out that holds another student's export
    operating_point: PointRequest | None = None  # --positive-class: a threshold every artifact carries
    command: str = ""


@dataclass
class ExportSummary:
    artifacts: list[Artifact]
    results: list[VerifyResult]
    rows: list[ReportRow]
    report: dict[str, Path]
    exit_code: int


@dataclass(frozen=True)
class Plan:
    """What was checked before any work: the jobs, the run and the manifests they read."""

    jobs: list[Job]
    src: RunSource
    out: Path
    stage: Path  # OUT/.staging: everything is built here and published only after verify
    test_data: Path | None
    calib_data: Path | None  # --calib-data or the run's training manifest


@dataclass(frozen=True)
class Reference:
    """The PyTorch model every artifact is compared to, and the ONNX every target starts from."""

    torch: TorchRunner
    onnx: OnnxExport
    onnx_seconds: float


@dataclass(frozen=True)
class Calibrated:
    int8: Int8Inputs | None  # None when no INT8 job is planned
    notes: list[str]


@dataclass(frozen=True)
class Built:
    artifacts: list[Artifact]
    notes: list[str]  # the traceback of each failed build

    @property
    def ok(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.status == "ok"]


@dataclass(frozen=True)
class Verified:
    results: list[VerifyResult]
    test_images: int
    paths: list[str] = field(default_factory=list)  # the test images, in verify order (the gate's flipped images)
    operating_point: ChosenPoint | None = None


@dataclass(frozen=True)
class Benched:
    reference: BenchResult | None  # PyTorch eager, same process, same threads
    artifacts: dict[str, BenchResult]


@dataclass(frozen=True)
class Picked:
    pick: Pick | None  # the deployment pick (edgekd.export.pick); None when no candidate qualifies
    candidates: list[Candidate]
    deployed: Path | None  # its copy in OUT/deploy/

    @property
    def headline(self) -> str:
        return self.pick.why if self.pick else no_pick(self.candidates)


def run_export(req: ExportRequest, console: bool = True) -> ExportSummary:
    """Plan (cheap checks first) -> ONNX -> calibration -> build each job -> verify -> bench -> report."""
    with stage("plan"):
        plan = make_plan(req)
    # NNCF installs its own stdout handler when first imported: import it before folding
    with folded_logs(plan.out / "export.log", preload=("nncf",)):
        with stage("ONNX"):
            ref = export_reference(plan, req)
        calibrated = calibrate(plan, req, ref)
        point = operating_point(req, plan, ref, calibrated)
        built = build_targets(plan, req, ref, calibrated.int8)
        verified = verify_artifacts(plan, req, ref, built.ok, point)
        benched = bench_artifacts(plan, req, ref, built.ok)
        verdicts = {r.name: ("pass" if r.passed else "fail", r.reasons) for r in verified.results}
        with stage("publish"):
            publish(plan.out, plan.stage, built.artifacts, verdicts, plan.src.meta.weights_sha256)
            picked = pick_and_deploy(plan, built, verified, benched)
    return report(plan, req, calibrated, built, verified, benched, picked, console)


def make_plan(req: ExportRequest) -> Plan:
    """Everything checkable without work: options, run dir, manifests, calibration/test overlap."""
    jobs = plan_jobs(req.target, req.precision)
    check_options(jobs, req.options)
    if req.opset < 17:
        raise EdgeKDError(f"--opset {req.opset}: opset >= 17 is required (LayerNormalization as one op)")
    from edgekd.export.source import resolve_run

    src = resolve_run(req.run)
    if req.operating_point is not None:
        req.operating_point.check(src.meta.classes)
    test_data = req.data or src.test_manifest
    if req.verify and test_data is None:
        raise EdgeKDError(f"no test manifest in {req.run} (data/test.json); pass --data MANIFEST or --no-verify")
    calib_data = CALIB_DATA.of(req.options) or src.train_manifest
    if any(j.precision == "int8" for j in jobs):
        if calib_data is None:
            raise EdgeKDError(f"INT8 needs calibration images: {req.run}/data/train.json is missing; pass --calib-data MANIFEST")
        from edgekd.export.calibration import refuse_test_overlap

        for m in {calib_data, src.train_manifest} - {None}:
            refuse_test_overlap(m, test_data if test_data and Path(test_data).is_file() else None)
    out = Path(req.out or Path(req.run if Path(req.run).is_dir() else Path(req.run).parent) / "export")
    out.mkdir(parents=True, exist_ok=True)
    refuse_other_run(out, src.meta.weights_sha256, req.overwrite)
    return Plan(jobs, src, out, staging_dir(out), test_data, calib_data)


def export_reference(plan: Plan, req: ExportRequest) -> Reference:
    """The reference PyTorch model and the ONNX every target starts from (same saved weights)."""
    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx
    from edgekd.export.source import TorchRunner

    torch_runner = TorchRunner(plan.src.weights, threads=req.threads)
    t0 = time.perf_counter()
    onnx = export_onnx(torch_runner.model, plan.src.meta, plan.stage / "onnx", OnnxExportConfig(opset=req.opset))
    return Reference(torch_runner, onnx, time.perf_counter() - t0)


def calibrate(plan: Plan, req: ExportRequest, ref: Reference) -> Calibrated:
    """One calibration set for every INT8 artifact, and one validation slice (training images,
    not the calibration ones) with the PyTorch logits the INT8 search aims at."""
    if not any(j.precision == "int8" for j in plan.jobs):
        return Calibrated(None, [])
    from edgekd.export.calibration import CalibrationConfig, build_calibration, build_validation
    from edgekd.export.int8_accuracy import AccuracyTarget, ValidationSet

    pp = plan.src.meta.preprocess
    with stage("calibration"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calib = build_calibration(str(plan.calib_data), pp, CalibrationConfig(size=CALIB_SIZE.of(req.options) or DEFAULT_CALIB_SIZE))
    notes = [f"calibration: {n}" for n in calib.warnings]
    notes += [f"warning: {w.message}" for w in caught if str(w.message) not in calib.warnings]
    if not req.accuracy_control:
        return Calibrated(Int8Inputs(calib, None, None), notes)
    # the run's training split, even when --calib-data overrides calibration
    with stage("INT8 validation slice"):
        images = build_validation(str(_validation_source(plan)), pp, VAL_SIZE.of(req.options) or DEFAULT_VAL_SIZE,
                                  calib.paths)
        val = ValidationSet(images, np.concatenate([ref.torch.predict(images.x[i : i + 32])
                                                    for i in range(0, len(images), 32)]))
    notes += [f"INT8 validation: {n}" for n in images.warnings]
    return Calibrated(Int8Inputs(calib, val, AccuracyTarget.from_thresholds(req.thresholds, len(val))), notes)


def _validation_source(plan: Plan) -> Path:
    return plan.src.train_manifest or plan.calib_data  # type: ignore[return-value]  # make_plan refused neither


def operating_point(req: ExportRequest, plan: Plan, ref: Reference, calibrated: Calibrated) -> ChosenPoint | None:
    """The threshold for `--positive-class`, chosen once (after calibration: it reuses the INT8 validation
    slice when there is no data/val.json) and stamped into the reference ONNX before any target copies it."""
    if req.operating_point is None:
        return None
    int8 = calibrated.int8
    chosen = choose_point(req.operating_point, plan.src, ref.torch, int8.val if int8 else None,
                          int8.calib.paths if int8 else None, req.batch_size)
    stamp(ref.onnx, chosen.point)
    return chosen


def build_targets(plan: Plan, req: ExportRequest, ref: Reference, int8: Int8Inputs | None) -> Built:
    """Each planned job through its target, one target instance per export (it may share work
    between its precisions)."""
    inputs = BuildInputs(ref.onnx, ref.onnx_seconds, plan.src.architecture, plan.stage, int8, req.options, req.threads,
                         req.batch_size, student=plan.src.weights)
    targets = {name: TARGETS[name](inputs) for name in dict.fromkeys(j.target for j in plan.jobs)}
    artifacts, notes = [], []
    for job in plan.jobs:
        with stage(f"build {job.name}"):
            art, failure = _build_one(targets[job.target], job)
        artifacts.append(art)
        notes += [failure] if failure else []
    return Built(artifacts, notes)


def _build_one(target: Target, job: Job) -> tuple[Artifact, str | None]:
    """Build one artifact; a failure is recorded (the report says why), not fatal to the others."""
    t0 = time.perf_counter()
    failure = None
    try:
        art = target.build(job.precision)
    except EdgeKDError:
        raise
    except Exception as e:  # noqa: BLE001 - record and continue with the other targets
        art = target.artifact(job.precision, status="failed", reason=f"{type(e).__name__}: {e}")
        failure = f"{job.name} failed: {traceback.format_exc(limit=3)}"
    art.build_seconds = art.build_seconds or time.perf_counter() - t0
    return art, failure


def verify_artifacts(plan: Plan, req: ExportRequest, ref: Reference, ok: list[Artifact],
                     point: ChosenPoint | None = None) -> Verified:
    """One pass over the test split through every built artifact."""
    if not (req.verify and ok):
        return Verified([], 0, operating_point=point)
    from edgekd.export.batches import iter_batches, manifest_attributes, manifest_items

    items = manifest_items(plan.test_data, plan.src.meta.classes)
    with stage(f"verify on {len(items)} test images"):
        runners = {a.name: open_to_verify(a.path, a.precision, RunnerConfig(threads=req.threads)) for a in ok}
        batches = bar(iter_batches(items, plan.src.meta.preprocess, req.batch_size), -(-len(items) // req.batch_size),
                      "verify", "batch")
        results = verify(runners, ref.torch, batches, req.thresholds, drift_images=req.drift_images,
                         classes=plan.src.meta.classes, operating_point=point.point if point else None,
                         attributes=manifest_attributes(plan.test_data))
    return Verified(results, len(items), [path for path, _ in items], point)


def bench_artifacts(plan: Plan, req: ExportRequest, ref: Reference, ok: list[Artifact]) -> Benched:
    """Batch-1 latency vs PyTorch eager, same process, same threads."""
    if not (req.bench and ok):
        return Benched(None, {})
    chw = tuple(plan.src.meta.preprocess["input_size"])
    cfg = BenchConfig(warmup=5, iters=req.bench_iters, throughput_batch=0, max_seconds=20)
    with stage(f"bench {len(ok) + 1} models at batch 1"):
        reference = bench_runner(ref.torch, chw, "pytorch-eager", "fp32", cfg)
        results = {}
        for a in ok:  # one runner at a time: nothing else loaded while it is timed
            latency = open_runner(a.latency_path or a.path, RunnerConfig(threads=req.threads, static_batch=1))
            results[a.name] = bench_runner(latency, chw, a.name, a.precision, cfg, size_mb=a.size_mb)
    return Benched(reference, results)


def pick_and_deploy(plan: Plan, built: Built, verified: Verified, benched: Benched) -> Picked:
    """After publish: the fastest published candidate that passed, copied to OUT/deploy/; an INT8
    artifact slower than its runtime's FP32 here gets a note saying so."""
    from edgekd.shared.card import card_path

    candidates = export_candidates(built.artifacts, verified.results, benched.artifacts)
    machine = machine_info()
    pick = choose(candidates, machine["cpu_model"], benched.reference.p50_ms if benched.reference else None)
    slow = slower_int8(candidates)
    for a in built.artifacts:
        a.notes += [slow[a.name]] if a.name in slow else []
    return Picked(pick, candidates, deploy_pick(plan.out, pick, card_path(plan.src.weights), machine))


def report(plan: Plan, req: ExportRequest, calibrated: Calibrated, built: Built, verified: Verified, benched: Benched,
           picked: Picked, console: bool) -> ExportSummary:
    """report.md/.json/.png, the console table, and which artifacts failed (exit code 1)."""
    rows = _rows(built.artifacts, verified.results, benched)
    by_name = {r.name: r for r in verified.results}
    failed = [a for a in built.artifacts if a.status == "failed"] + [
        a for a in built.ok if a.name in by_name and not by_name[a.name].passed]
    paths = write_report(rows, plan.out, _context(plan, req, calibrated, built, verified, benched, picked))
    if console:
        print_table(rows, title=f"edgekd export: {plan.src.architecture} -> {plan.out}")
        for a in failed:
            why = a.reason or "; ".join(by_name[a.name].reasons)
            print(f"FAILED {a.name} ({a.path or 'not built'}): {why}", file=sys.stderr)
        print(f"report: {paths['md']}")
        print(f"deployment pick: {picked.headline}" + (f" -> {picked.deployed}" if picked.deployed else ""))
    return ExportSummary(built.artifacts, verified.results, rows, paths, 1 if failed else 0)


def _context(plan: Plan, req: ExportRequest, calibrated: Calibrated, built: Built, verified: Verified,
             benched: Benched, picked: Picked) -> dict[str, Any]:
    """The report's JSON fields besides the table (`write_report` puts the rows under "artifacts")."""
    src, int8, op = plan.src, calibrated.int8, verified.operating_point
    bench = {"pytorch": benched.reference, **benched.artifacts} if benched.reference else {}
    return {
        "architecture": src.architecture, "source_weights": str(src.weights), "weights_sha256": src.meta.weights_sha256,
        "test_data": str(plan.test_data), "test_images": verified.test_images, "command": req.command,
        "calibration": f"{len(int8.calib)} images, class-stratified from {plan.calib_data}" if int8 is not None else "none",
        "int8_validation": (f"{len(int8.val)} training images (not calibration, never test; half to search, half to "
                            f"certify) from {_validation_source(plan)}" if int8 is not None and int8.val is not None
                            else "none"),
        "reference": "PyTorch eager FP32" + (f", p50 {benched.reference.p50_ms:.2f} ms" if benched.reference else ""),
        "machine": machine_info(), "notes": calibrated.notes + built.notes + [
            f"{a.name}: {n}" for a in built.artifacts for n in a.notes],
        "verify": [r.to_dict() for r in verified.results], "bench": {k: v.to_dict() for k, v in bench.items()},
        "build": [a.to_dict() for a in built.artifacts], "thresholds": req.thresholds.__dict__,
        "operating_point": op.to_dict() if op else None,
        "pick": picked.pick.to_dict() if picked.pick else None, "pick_headline": picked.headline,
        "deploy": str(picked.deployed) if picked.deployed else None,
        "sections": [f"## {r.name}: per-class gate vs PyTorch\n\n{r.gate.to_markdown(verified.paths)}"
                     for r in verified.results if r.gate is not None]
        + [f"## {r.name}: subgroups\n\n{r.subgroups.to_markdown()}"
           for r in verified.results if r.subgroups is not None]
        + ([operating_point_markdown(op.point, op.validation, verified.results)] if op else []),
    }


def _rows(artifacts: list[Artifact], results: list[VerifyResult], benched: Benched) -> list[ReportRow]:
    by_name = {r.name: r for r in results}
    ref = benched.reference
    rows = []
    if ref is not None:
        rows.append(ReportRow("pytorch-eager", "pytorch", "fp32", p50_ms=ref.p50_ms, speedup_vs_torch=1.0,
                              accuracy=results[0].reference_accuracy if results else None))
    for a in artifacts:
        r, b = by_name.get(a.name), benched.artifacts.get(a.name)
        rows.append(ReportRow(
            a.name, TARGETS[a.target].format, a.precision, status=a.status, size_mb=round(a.size_mb, 2) if a.path else None,
            accuracy=r.accuracy if r else None, drop_pt=r.drop_pt if r else None,
            agreement_pct=r.agreement_pct if r else None, max_abs_diff=r.max_abs_diff if r else None,
            mean_kl=r.mean_kl if r else None, map_rank_corr=r.map_rank_corr if r else None, p50_ms=b.p50_ms if b else None,
            speedup_vs_torch=(ref.p50_ms / b.p50_ms) if (b and ref) else None,
            passed=r.passed if r else None, reasons=(r.reasons if r else ([a.reason] if a.reason else [])), path=a.path,
            int8_share=a.int8_share.share if a.int8_share else None, gate=r.gate.outcome if r and r.gate else None,
            runs=r.precision if r else (b.runs if b else None),  # verify held it to the precision that ran
        ))
    return rows


def command_line(argv: list[str]) -> str:
    return "edgekd export " + " ".join(shlex.quote(a) for a in argv)
