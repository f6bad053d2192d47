"""Export targets, registered the way timm registers models: one module per target.

Why: everything that differs between ONNX Runtime, OpenVINO and TensorRT lives in that
target's module: what it is (name, artifact suffix, runtime, precisions, the options it reads)
and how it builds (`build(precision) -> Artifact`). The target and option tables
(`edgekd.export.options`), the CLI flags (`edgekd.export.cli`), the report's format column and
the pipeline's build loop are all derived from what is registered here. Adding a format is one
module (imported at the bottom of this file) plus a test; `pipeline.py` does not change.
Importing this package is cheap: the targets import their toolchains inside `build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, Mapping, TypeVar

from edgekd.export.artifacts import Artifact
from edgekd.export.calibration import DEFAULT_CALIB_SIZE, DEFAULT_VAL_SIZE
from edgekd.export.ort_quant import CALIB_METHODS

if TYPE_CHECKING:
    from edgekd.export.calibration import CalibrationSet
    from edgekd.export.int8_accuracy import AccuracyTarget, ValidationSet
    from edgekd.export.onnx_export import OnnxExport

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
T = TypeVar("T")


@dataclass(frozen=True)
class Option(Generic[T]):
    """A flag that only some targets read: declared once, listed by every target that reads it.

    The CLI adds it; `options.check_options` refuses it when no planned job would use it.
    """

    name: str  # request key; the flag is --name-with-dashes
    type: Callable[[str], T]
    help: str
    precisions: tuple[str, ...] = PRECISIONS  # the precisions of its targets that it affects
    choices: tuple[str, ...] | None = None
    minimum: int | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def of(self, values: Mapping[str, object]) -> T | None:
        """Its value among a request's options; None when not given."""
        return values.get(self.name)  # type: ignore[return-value]


def comma_list(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


# INT8 options several targets read: calibration is one step for every INT8 artifact, and
# ONNX Runtime's quantizer makes both the CPU artifact and TensorRT's Q/DQ ONNX.
CALIB_DATA = Option("calib_data", Path, "calibration manifest (default: RUN/data/train.json; never the test split)",
                    ("int8",))
CALIB_SIZE = Option("calib_size", int, f"calibration images, class-stratified (default {DEFAULT_CALIB_SIZE} or the "
                    "whole split)", ("int8",), minimum=1)
CALIB_METHOD = Option("calib_method", str, "ONNX Runtime calibration of ORT's quantizer (default per architecture: "
                      "mean-minmax for EfficientNet/MobileNet, else minmax)", ("int8",), choices=CALIB_METHODS)
KEEP_FLOAT = Option("keep_float", comma_list, "comma list of op types / node-name substrings kept float (default per "
                    "architecture: ViT LayerNormalization,Gelu,Erf,Softmax; ConvNeXt LayerNormalization; EfficientNet "
                    "conv_stem,blocks.0.0/conv_dw)", ("int8",))
VAL_SIZE = Option("val_size", int, "INT8 accuracy control: validation images from the TRAINING manifest (default "
                  f"{DEFAULT_VAL_SIZE}, never calibration or test images; the agreement target rises on a smaller "
                  "slice, so that its 95 %% lower bound clears the verify bar)", ("int8",))


@dataclass(frozen=True)
class Int8Inputs:
    """The calibration step's output, the same for every INT8 artifact."""

    calib: CalibrationSet
    val: ValidationSet | None  # the accuracy-aware search's slice; None = accuracy control off (plain PTQ)
    goal: AccuracyTarget | None  # what a candidate must show on `val`


@dataclass(frozen=True)
class BuildInputs:
    """What every target builds from: one FP32 ONNX, so every artifact has the same weights."""

    onnx: OnnxExport  # dynamic batch + static batch-1 (for latency)
    onnx_seconds: float  # what the fp32 ONNX cost to export
    architecture: str
    out: Path  # the export folder; a target writes under out/<its name>/
    int8: Int8Inputs | None  # None when no INT8 job is planned
    options: Mapping[str, object]  # the request's target options, read with `Option.of`
    threads: int
    batch_size: int  # the verify batch
    student: Path | None = None  # the student's safetensors: what quantization-aware training fine-tunes


class Target:
    """Subclass, declare, implement `build`, decorate with `@register_target`.

    The pipeline makes one instance per export and asks it for each planned precision, so a
    target may reuse work between its precisions (OpenVINO converts the ONNX once).
    """

    name: ClassVar[str]
    format: ClassVar[str]  # the report's format column
    suffix: ClassVar[str]  # what its artifacts end with (`path`)
    runtime: ClassVar[str]  # what loads them: a runtime of edgekd.export.runtimes.open_runner
    precisions: ClassVar[tuple[str, ...]]
    default_precisions: ClassVar[tuple[str, ...]] = ()  # what `--target NAME` alone builds; () = every precision
    options: ClassVar[tuple[Option, ...]] = ()
    why_not: ClassVar[dict[str, str]] = {}  # refused precision -> why

    def __init__(self, inputs: BuildInputs) -> None:
        self.inputs = inputs

    def build(self, precision: str) -> Artifact:
        raise NotImplementedError

    @classmethod
    def planned_precisions(cls) -> tuple[str, ...]:
        """What `--target NAME` (or `all`) builds on this machine: its defaults, less any that
        cannot pay off here (OpenVINO plans BF16 only on a CPU that computes BF16)."""
        return cls.default_precisions

    @classmethod
    def check_options(cls, values: Mapping[str, object]) -> None:
        """Refuse option values that only make sense together (each Option checks its own)."""

    @property
    def int8(self) -> Int8Inputs:
        if self.inputs.int8 is None:  # the pipeline calibrates whenever an int8 job is planned
            raise RuntimeError(f"{self.name}: an int8 build without calibration")
        return self.inputs.int8

    def path(self, precision: str) -> Path:
        return self.inputs.out / self.name / f"model.{precision}{self.suffix}"

    def artifact(self, precision: str, **fields: Any) -> Artifact:
        return Artifact(f"{self.name}-{precision}", self.name, precision, runtime=self.runtime, **fields)


#: name -> target, in registration order: the order `--target all` builds and reports them
TARGETS: dict[str, type[Target]] = {}


def register_target(cls: type[Target]) -> type[Target]:
    """Class decorator: add `cls` to `TARGETS`, after checking its declaration."""
    if cls.name in TARGETS:
        raise ValueError(f"export target {cls.name!r} is registered twice ({TARGETS[cls.name].__module__}, {cls.__module__})")
    cls.default_precisions = cls.default_precisions or cls.precisions
    if not set(cls.default_precisions) <= set(cls.precisions) <= set(PRECISIONS):
        raise ValueError(f"export target {cls.name!r}: default precisions {cls.default_precisions} must be among its "
                         f"precisions {cls.precisions}, which must be among {PRECISIONS}")
    declared = {o.name: o for t in TARGETS.values() for o in t.options}
    for o in cls.options:
        if declared.get(o.name, o) is not o:
            raise ValueError(f"export target {cls.name!r} declares a second option named {o.name!r}; reuse the first")
    TARGETS[cls.name] = cls
    return cls


# the built-in targets, in the order `--target all` builds them
from edgekd.export.targets import onnx, openvino, tensorrt  # noqa: E402,F401
