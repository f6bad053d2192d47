"""`edgekd export | verify | bench`: argument parsing only; the work lives in its modules.

Exit codes: 0 = everything built and within thresholds; 1 = an artifact failed to build or
broke a verify threshold (the report names which and why); 2 = bad input (EdgeKDError,
printed by the dispatcher without a traceback). `bench` imports neither torch nor timm.
The flags that only some targets read come from the registered targets (`option_table`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.errors import EdgeKDError
from edgekd.export.options import check_options, option_table, plan_jobs
from edgekd.export.runner import ARTIFACT_PRECISION, RunnerConfig
from edgekd.export.targets import PRECISIONS, TARGETS

if TYPE_CHECKING:
    from edgekd.export.bench import BenchConfig


def add_drift_args(ap: argparse.ArgumentParser) -> None:
    """Explanation drift, for `verify` and `export` alike: same evidence, not only the same top-1."""
    ap.add_argument("--drift-images", type=int, default=16, help="explanation drift: compare each artifact's "
                    "occlusion maps with PyTorch's on the first N test images (0 = off)")
    ap.add_argument("--drift-threshold", type=float, metavar="RHO", help="fail an artifact whose maps' mean rank "
                    "correlation with PyTorch's is below RHO (e.g. 0.8): top-1 kept, evidence moved")


def add_check_args(ap: argparse.ArgumentParser) -> None:
    """What passes, for `verify` and `export` alike: overall thresholds, explanation drift, the per-class gate."""
    add_drift_args(ap)
    g = ap.add_argument_group("per-class non-inferiority gate (paired, vs PyTorch on the same test images)")
    g.add_argument("--margin", type=float, default=None, metavar="PT",
                   help="largest sensitivity/specificity loss per class still non-inferior, in points (default "
                        "5, from edgekd.shared.clinical.gate.GateConfig)")
    g.add_argument("--max-ece-increase", type=float, default=None, metavar="ECE",
                   help="fail an artifact whose expected calibration error exceeds PyTorch's by more (default 0.02)")
    g.add_argument("--strict", action="store_true", help="an INCONCLUSIVE class (too few images to show "
                   "non-inferiority) fails the artifact too")
    g.add_argument("--no-gate", action="store_true", help="skip the per-class gate (overall thresholds only)")


def add_operating_point_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("operating point (a threshold on one positive class)")
    g.add_argument("--positive-class", metavar="NAME", help="choose a threshold on P(NAME) for --target-sensitivity "
                   "on held-out validation images (RUN/data/val.json, else the INT8 validation slice; never test), "
                   "report test sensitivity/specificity at it for PyTorch and every artifact; export stores it in "
                   "each artifact and `edgekd predict` applies it")
    g.add_argument("--target-sensitivity", type=float, metavar="S", help="with --positive-class: the validation "
                   "sensitivity the threshold must reach (default 0.95)")


def operating_point_from_args(a: argparse.Namespace):
    from edgekd.export.operating_point import PointRequest

    if a.positive_class is None:
        if a.target_sensitivity is not None:
            raise EdgeKDError("--target-sensitivity needs a class to threshold; fix: add --positive-class NAME")
        return None
    return PointRequest(a.positive_class, 0.95 if a.target_sensitivity is None else a.target_sensitivity)


def thresholds_from_args(a: argparse.Namespace):
    from dataclasses import replace

    from edgekd.export.verify import Thresholds

    t = Thresholds.parse(a.threshold)
    t.min_map_rank_corr, t.strict = a.drift_threshold, a.strict
    if a.no_gate:
        t.gate = None
    else:
        if a.margin is not None:
            t.gate = replace(t.gate, sensitivity_margin=a.margin / 100, specificity_margin=a.margin / 100)
        if a.max_ece_increase is not None:
            t.gate = replace(t.gate, max_ece_increase=a.max_ece_increase)
    return t


def export_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edgekd export", description="Export a trained student to "
                                 f"{' / '.join(t.format for t in TARGETS.values())}, verify every artifact on the test "
                                 "split, time it, write a report.")
    ap.add_argument("--run", type=Path, help="trainer run directory (or a .safetensors with its .json sidecar)")
    ap.add_argument("--target", default="all", help=f"one of {', '.join(TARGETS)}, a comma list (onnx,openvino) or all")
    defaults = "; ".join(f"{name}: {'+'.join(t.planned_precisions())}" for name, t in TARGETS.items())
    ap.add_argument("--precision", default=None, choices=[*PRECISIONS, "all"],
                    help=f"default: the target's usual set ({defaults})")
    ap.add_argument("--data", type=Path, help="test manifest JSON or dataset folder (default: RUN/data/test.json)")
    ap.add_argument("--no-accuracy-control", action="store_true", help="INT8: plain PTQ, no keep-float search (faster, "
                    "may fail verify)")
    ap.add_argument("--out", type=Path, help="output folder (default RUN/export)")
    ap.add_argument("--opset", type=int, default=20, help="ONNX opset, >= 17 (20 keeps GELU one op; 17 for TensorRT < 10)")
    ap.add_argument("--no-verify", action="store_true", help="build only: the artifacts are marked unverified and "
                    "predict/bench refuse them without --allow-unverified")
    ap.add_argument("--overwrite", action="store_true", help="replace an --out that holds another student's export")
    ap.add_argument("--no-bench", action="store_true", help="skip the batch-1 latency column")
    ap.add_argument("--threshold", action="append", metavar="PREC.drop=PT|PREC.agreement=PCT",
                    help="override a verify threshold, e.g. int8.drop=1.5 (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32, help="verify batch (the last one may be partial)")
    ap.add_argument("--bench-iters", type=int, default=50)
    add_check_args(ap)
    add_operating_point_args(ap)
    g = ap.add_argument_group("target options", "each applies only to the targets and precisions in brackets")
    for name, use in option_table().items():
        o = use.option
        g.add_argument(o.flag, dest=name, type=o.type, choices=o.choices,
                       help=f"{o.help} [{'/'.join(use.targets)}: {'/'.join(o.precisions)}]")
    d = ap.add_argument_group("TensorRT on the device")
    d.add_argument("--build-on-device", action="store_true",
                   help="build an engine on THIS GPU from a shipped ONNX (--onnx); needs no torch and no run directory")
    d.add_argument("--onnx", type=Path, help="the ONNX to build from with --build-on-device (model.int8.qdq.onnx for int8)")
    return ap


def export_main(argv: list[str]) -> int:
    a = export_parser().parse_args(argv)
    options = {name: getattr(a, name) for name in option_table()}
    if a.build_on_device or a.onnx:
        if not (a.build_on_device and a.onnx):
            raise EdgeKDError("--build-on-device and --onnx go together: edgekd export --build-on-device --onnx model.onnx "
                              "--precision fp16")
        if a.target not in ("tensorrt", "all"):  # a comma list makes no sense here either
            raise EdgeKDError(f"--build-on-device builds TensorRT engines; --target {a.target} makes no sense with it")
        return build_on_device(a.onnx, a.out or a.onnx.parent, a.precision, options)
    if a.run is None:
        raise EdgeKDError("--run RUN_DIR is required (or --build-on-device --onnx MODEL.onnx on a GPU device)")
    from edgekd.export.pipeline import ExportRequest, command_line, run_export

    thresholds = thresholds_from_args(a)
    req = ExportRequest(
        run=a.run, target=a.target, precision=a.precision, out=a.out, data=a.data, options=options,
        accuracy_control=not a.no_accuracy_control, verify=not a.no_verify, bench=not a.no_bench, thresholds=thresholds,
        drift_images=a.drift_images, threads=a.threads, batch_size=a.batch_size, bench_iters=a.bench_iters,
        opset=a.opset, overwrite=a.overwrite, operating_point=operating_point_from_args(a), command=command_line(argv),
    )
    return run_export(req).exit_code


def verify_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="edgekd verify", description="Check artifacts against the run's PyTorch model "
                                 "on the test split; exit 1 if any breaks a threshold.")
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--run", type=Path, required=True, help="the run directory (or .safetensors) the artifacts came from")
    ap.add_argument("--data", type=Path, help="test manifest (default RUN/data/test.json)")
    ap.add_argument("--threshold", action="append")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    add_check_args(ap)
    add_operating_point_args(ap)
    a = ap.parse_args(argv)
    from edgekd.export.batches import iter_batches, manifest_attributes, manifest_items
    from edgekd.export.operating_point import verify_point
    from edgekd.export.report import ReportRow, print_table
    from edgekd.export.source import TorchRunner, resolve_run
    from edgekd.export.verify import operating_point_markdown, verify

    thresholds = thresholds_from_args(a)
    point_request = operating_point_from_args(a)
    src = resolve_run(a.run)
    if point_request is not None:
        point_request.check(src.meta.classes)
    data = a.data or src.test_manifest
    if data is None:
        raise EdgeKDError(f"no test manifest in {a.run}; pass --data")
    arts, carried = _open_artifacts(a.artifacts, src.meta.weights_sha256, a.threads)
    items = manifest_items(data, src.meta.classes)
    reference = TorchRunner(src.weights, a.threads)
    chosen = verify_point(point_request, carried, src, reference, a.batch_size)
    results = verify(arts, reference, iter_batches(items, src.meta.preprocess, a.batch_size), thresholds,
                     drift_images=a.drift_images, classes=src.meta.classes,
                     operating_point=chosen.point if chosen else None, attributes=manifest_attributes(data))
    rows = [ReportRow(Path(r.name).name, Path(r.name).suffix, r.precision, accuracy=r.accuracy, drop_pt=r.drop_pt,
                      agreement_pct=r.agreement_pct, max_abs_diff=r.max_abs_diff, mean_kl=r.mean_kl,
                      map_rank_corr=r.map_rank_corr, passed=r.passed,
                      reasons=r.reasons, path=r.name) for r in results]
    print_table(rows, title=f"edgekd verify on {data} ({len(items)} images)")
    for r in results:
        if r.gate is not None:
            print(f"\n{r.name}: {r.gate.to_markdown([p for p, _ in items])}")
        if r.subgroups is not None:
            print(f"\n{r.name}: {r.subgroups.to_markdown()}")
    if chosen is not None:
        print("\n" + operating_point_markdown(chosen.point, chosen.validation, results))
    if a.json:
        a.json.write_text(json.dumps([r.to_dict() for r in results], indent=2))
    bad = [r for r in results if not r.passed]
    for r in bad:
        print(f"FAILED {r.name}: {'; '.join(r.reasons)}", file=sys.stderr)
    return 1 if bad else 0


def _open_artifacts(paths: list[Path], weights_sha256: str | None, threads: int) -> tuple[dict, set]:
    """Runners at the precision each artifact runs, and the operating points they carry; an artifact of
    other weights is refused (it would be verified against the wrong model)."""
    from edgekd.export.metadata import operating_point, read_metadata
    from edgekd.export.runtimes import open_to_verify

    arts, carried = {}, set()
    for p in paths:
        if not p.exists():
            raise EdgeKDError(f"{p}: no such artifact")
        md = read_metadata(p)
        if md.get("weights_sha256") and weights_sha256 and md["weights_sha256"] != weights_sha256:
            raise EdgeKDError(f"{p} was exported from other weights (sha256 {md['weights_sha256'][:12]}..., the run's "
                              f"{weights_sha256[:12]}...); verify it against the run it came from")
        arts[str(p)] = open_to_verify(p, str(md.get("precision", "unknown")), RunnerConfig(threads=threads))
        carried |= {operating_point(md)} - {None}
    return arts, carried


def build_on_device(onnx: Path, out: Path, precision: str | None, values: Mapping[str, object]) -> int:
    """`edgekd export --build-on-device --onnx MODEL.onnx`: an engine on THIS GPU from a shipped ONNX
    (no torch, no run directory). The precision defaults to what the file name says."""
    from edgekd.export import tensorrt_export as trtx
    from edgekd.export.targets.tensorrt import MAX_BATCH, MIN_BATCH, OPT_BATCH, TensorRT, build_config

    precision = precision or ("int8" if ".qdq" in onnx.name else "fp16" if ".fp16" in onnx.name else "fp32")
    jobs = plan_jobs(TensorRT.name, precision)
    check_options(jobs, {o.name: o.of(values) for o in (MIN_BATCH, OPT_BATCH, MAX_BATCH)})
    reason = trtx.tensorrt_unavailable_reason()
    if reason:
        raise EdgeKDError(f"cannot build a TensorRT engine here: {reason}")
    for job in jobs:
        engine = out / trtx.engine_name(onnx, job.precision)
        sc = trtx.build_engine(onnx, engine, build_config(job.precision, values, 32))
        print(f"built {engine} ({sc.device.gpu_name}, sm {sc.device.compute_capability}, TensorRT {sc.device.tensorrt_version})")
    return 0


def bench_main(argv: list[str]) -> int:
    """Torch-free: runs on a box with only `edgekd[runtime]`."""
    ap = argparse.ArgumentParser(prog="edgekd bench", description="Time artifacts on this machine (batch-1 latency "
                                 "percentiles, load time, throughput, size, CPU/ISA, runtime versions).")
    ap.add_argument("artifacts", nargs="*", type=Path)
    ap.add_argument("--pick", type=Path, metavar="EXPORT_DIR", help="re-time every verified candidate of an export "
                    "folder on this box (batch 1) and name this box's deployment pick; writes "
                    "EXPORT_DIR/bench-<hostname>.json and .md")
    ap.add_argument("--data", type=Path, help="manifest or folder: time on a real preprocessed image (default random)")
    ap.add_argument("--threads", type=int, default=2, help="0 = the runtime's default")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--throughput-batch", type=int, default=32, help="0 = skip")
    ap.add_argument("--throughput-seconds", type=float, default=6.0,
                    help="throughput run length (static-batch compile, THROUGHPUT-hint streams, like benchmark_app -t)")
    ap.add_argument("--openvino-precision", default=ARTIFACT_PRECISION,
                    choices=[ARTIFACT_PRECISION, "f32", "bf16", "f16", "default"],
                    help="OpenVINO INFERENCE_PRECISION_HINT (default: the one the IR's precision asks for: bf16 for "
                    "bf16, f16 for fp16 (f32 on a CPU without FP16 arithmetic), f32 for fp32 and int8; 'default' = "
                    "the device's choice, bf16 on AVX-512 BF16/AMX)")
    ap.add_argument("--dynamic", action="store_true", help="time the dynamic-batch model as is (default: compile for batch 1)")
    ap.add_argument("--json", type=Path, help="write machine + results JSON here")
    ap.add_argument("--allow-unverified", action="store_true", help="time an artifact that did not pass verify")
    a = ap.parse_args(argv)
    from edgekd.export.bench import BenchConfig

    cfg = BenchConfig(warmup=a.warmup, iters=a.iters)
    ovp = None if a.openvino_precision == "default" else a.openvino_precision
    rcfg = RunnerConfig(threads=a.threads or None, static_batch=None if a.dynamic else 1, inference_precision=ovp)
    if a.pick is not None:
        return _bench_pick(a, cfg, rcfg)
    if not a.artifacts:
        raise EdgeKDError("nothing to time; fix: pass artifacts (edgekd bench OUT/openvino/model.int8.xml) or an export "
                          "folder (edgekd bench --pick OUT)")
    return _bench_artifacts(a, cfg, rcfg)


def _bench_artifacts(a: argparse.Namespace, cfg: BenchConfig, rcfg: RunnerConfig) -> int:
    from edgekd.export.bench import machine_info, measure_throughput, time_artifact
    from edgekd.export.metadata import preprocess_dict, read_metadata
    from edgekd.export.publish import require_verified

    machine = machine_info()
    results = []
    for p in a.artifacts:
        if not p.exists():
            raise EdgeKDError(f"{p}: no such artifact")
        require_verified(p, a.allow_unverified)
        sample = None
        if a.data:
            from edgekd.export.batches import iter_batches, manifest_items

            sample = next(iter_batches(manifest_items(a.data)[:1], preprocess_dict(read_metadata(p))))[0][0]
        r = time_artifact(p, cfg, rcfg, sample)
        if a.throughput_batch:
            tp = measure_throughput(p, a.throughput_batch, a.threads or None, rcfg.inference_precision,
                                    a.throughput_seconds)
            r.throughput_batch, r.throughput_ips, r.throughput = tp.batch, tp.ips, asdict(tp)
        results.append(r)
    _print_bench(results, machine)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"machine": machine, "results": [r.to_dict() for r in results]}, indent=2, default=str))
    return 0


def _bench_pick(a: argparse.Namespace, cfg: BenchConfig, rcfg: RunnerConfig) -> int:
    """`edgekd bench --pick EXPORT_DIR`: this box's timing of the verified candidates, and its pick
    (exit 1 when none qualifies). Batch 1 at the precision each was verified at: the pick's rule."""
    from edgekd.export.pick import repick, write_repick

    given = {"artifacts": a.artifacts, "--data": a.data, "--json": a.json, "--allow-unverified": a.allow_unverified,
             "--openvino-precision": a.openvino_precision != ARTIFACT_PRECISION}
    clash = [flag for flag, value in given.items() if value]
    if clash:
        raise EdgeKDError(f"--pick does not take {', '.join(clash)}: it times every verified candidate of the folder "
                          "at its own precision and writes EXPORT_DIR/bench-<hostname>.json; fix: drop them")
    if not a.pick.is_dir():
        raise EdgeKDError(f"--pick {a.pick}: no such folder; fix: pass the folder `edgekd export` wrote (its --out)")
    rp = repick(a.pick, cfg, rcfg)
    _print_bench(rp.results, rp.machine)
    for path, why in rp.not_timed.items():
        print(f"not timed: {path}: {why}")
    js, md = write_repick(rp)
    print(f"bench: {js}, {md}")
    print(f"deployment pick on this box: {rp.headline}")
    return 0 if rp.pick else 1


def _print_bench(results: list, machine: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgekd.export.runtimes import precision_label

    isa = ", ".join(k for k, v in machine["isa"].items() if v) or "none"
    t = Table(title=f"edgekd bench: {machine['cpu_model']} ({machine['affinity_cores']} cores; {isa})")
    for h in ("artifact", "runtime", "precision", "threads", "load s", "p50 ms", "p90 ms", "p99 ms", "img/s @batch", "size MB"):
        t.add_column(h)
    for r in results:
        t.add_row(r.name, r.runtime, precision_label(r.precision, runs=r.runs), str(r.threads), f"{r.load_seconds:.2f}", f"{r.p50_ms:.2f}",
                  f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.throughput_ips:.1f} @{r.throughput_batch}" if r.throughput_batch else "-",
                  f"{r.size_mb:.2f}")
    Console(width=None if sys.stdout.isatty() else 200).print(t)
    print(f"runtimes: {machine['runtimes']}; GPU: {machine['gpu'] or 'none'}")
