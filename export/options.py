"""The ONE table of what each export target accepts, checked before any work starts.

Why: a wrong combination (e.g. `--target onnx --precision fp16`) should fail in
milliseconds with the reason and the fix, not after a minute of exporting. Every CLI flag
that only means something for some targets/precisions is declared here too.

Decisions (documented in README "Export"):
- onnx: fp32 (plain ONNX, dynamic batch + static batch-1) and int8 (ONNX Runtime static
  quantization). No fp16: ONNX Runtime's CPU provider has no fp16 kernels for most ops (it
  would insert casts and run slower than fp32); FP16 is served by OpenVINO (FP16-compressed
  IR) and TensorRT.
- openvino: fp32 (IR), fp16 (IR with FP16-compressed weights), int8 (NNCF PTQ).
- tensorrt: fp32, fp16, int8 (explicit quantization from the Q/DQ ONNX). Engines need an
  NVIDIA GPU; without one the ONNX inputs are still written and the engine is reported as
  skipped with the reason (build it on the device with `--build-on-device`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekd.errors import EdgeKDError

TARGETS = ("onnx", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
CALIB_METHODS = ("minmax", "entropy", "percentile")
ORT_QUANT_FORMATS = ("qoperator", "qdq", "qdq_s8s8")


@dataclass(frozen=True)
class TargetSpec:
    """What one target accepts; `why_not` explains each precision it refuses."""

    precisions: tuple[str, ...]
    default_precisions: tuple[str, ...]
    why_not: dict[str, str] = field(default_factory=dict)
    needs_gpu: bool = False


TARGET_TABLE: dict[str, TargetSpec] = {
    "onnx": TargetSpec(
        precisions=("fp32", "int8"),
        default_precisions=("fp32", "int8"),
        why_not={
            "fp16": "ONNX Runtime's CPU provider has no fp16 kernels for most ops, so an fp16 ONNX "
            "runs slower than fp32 there; use --target openvino --precision fp16 (CPU) or "
            "--target tensorrt --precision fp16 (GPU)",
        },
    ),
    "openvino": TargetSpec(precisions=("fp32", "fp16", "int8"), default_precisions=("fp32", "fp16", "int8")),
    "tensorrt": TargetSpec(precisions=("fp32", "fp16", "int8"), default_precisions=("fp16", "int8"), needs_gpu=True),
}

#: flag -> (targets it applies to, precisions it applies to, human name)
OPTION_TABLE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "calib_size": (("onnx", "openvino", "tensorrt"), ("int8",)),
    "calib_method": (("onnx", "tensorrt"), ("int8",)),
    "calib_data": (("onnx", "openvino", "tensorrt"), ("int8",)),
    "quant_format": (("onnx",), ("int8",)),
    "keep_float": (("onnx", "tensorrt"), ("int8",)),
    "val_size": (("onnx", "openvino"), ("int8",)),
    "build_on_device": (("tensorrt",), ("fp32", "fp16", "int8")),
    "onnx": (("tensorrt",), ("fp32", "fp16", "int8")),
    "min_batch": (("tensorrt",), ("fp32", "fp16", "int8")),
    "opt_batch": (("tensorrt",), ("fp32", "fp16", "int8")),
    "max_batch": (("tensorrt",), ("fp32", "fp16", "int8")),
}


@dataclass(frozen=True)
class Job:
    """One artifact to build: (target, precision)."""

    target: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.target}-{self.precision}"


def plan_jobs(target: str, precision: str | None) -> list[Job]:
    """Expand `--target/--precision` into jobs, or raise EdgeKDError saying why not.

    `--target` is one target, a comma list (`onnx,openvino`) or `all`. `all` means every target
    with its default precisions (an explicit `--precision` then filters them); `--precision all`
    means every precision the target allows.
    """
    if precision is not None and precision != "all" and precision not in PRECISIONS:
        raise EdgeKDError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)} or all")
    names = [t.strip() for t in target.split(",") if t.strip()]
    for t in names:
        if t != "all" and t not in TARGETS:
            raise EdgeKDError(f"unknown --target {t!r}; choose one or a comma list of {', '.join(TARGETS)}, or all")
    if not names:
        raise EdgeKDError("--target is empty; choose one or a comma list of " + ", ".join(TARGETS) + ", or all")
    if "all" in names:
        jobs = [Job(t, p) for t in TARGETS for p in TARGET_TABLE[t].default_precisions]
        return jobs if precision in (None, "all") else [j for j in jobs if j.precision == precision]
    return [j for t in TARGETS if t in names for j in _target_jobs(t, precision)]


def _target_jobs(target: str, precision: str | None) -> list[Job]:
    spec = TARGET_TABLE[target]
    if precision is None:
        return [Job(target, p) for p in spec.default_precisions]
    if precision == "all":
        return [Job(target, p) for p in spec.precisions]
    if precision not in spec.precisions:
        reason = spec.why_not.get(precision, "not supported")
        raise EdgeKDError(
            f"--target {target} --precision {precision} makes no sense: {reason}. "
            f"{target} accepts: {', '.join(spec.precisions)}"
        )
    return [Job(target, precision)]


def check_options(jobs: list[Job], given: dict[str, object]) -> None:
    """Refuse flags that no planned job would use (e.g. `--calib-size` with fp32 only)."""
    for opt, value in given.items():
        if value is None or value is False or opt not in OPTION_TABLE:
            continue
        targets, precisions = OPTION_TABLE[opt]
        if not any(j.target in targets and j.precision in precisions for j in jobs):
            flag = "--" + opt.replace("_", "-")
            planned = ", ".join(j.name for j in jobs) or "nothing"
            raise EdgeKDError(
                f"{flag} has no effect here: it applies to target(s) {'/'.join(targets)} with "
                f"precision(s) {'/'.join(precisions)}, but the plan is: {planned}. Drop {flag} or "
                "change --target/--precision"
            )
    if given.get("calib_method") not in (None, *CALIB_METHODS):
        raise EdgeKDError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}")
    if given.get("quant_format") not in (None, *ORT_QUANT_FORMATS):
        raise EdgeKDError(f"--quant-format must be one of {', '.join(ORT_QUANT_FORMATS)}")
    size = given.get("calib_size")
    if size is not None and int(size) < 1:  # type: ignore[arg-type]
        raise EdgeKDError("--calib-size must be >= 1")
    b = [given.get(k) for k in ("min_batch", "opt_batch", "max_batch")]
    if all(v is not None for v in b) and not (1 <= b[0] <= b[1] <= b[2]):  # type: ignore[operator]
        raise EdgeKDError(f"TensorRT profile needs 1 <= min <= opt <= max batch, got {b[0]}/{b[1]}/{b[2]}")
