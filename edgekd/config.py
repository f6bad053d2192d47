"""Training configuration: nested dataclasses, YAML presets and `key=value` overrides.

One `TrainConfig` describes a run completely; the resolved copy is written to
`RUN/config.yaml` so a run directory is reproducible on its own. Overrides use dotted keys
(`optim.lr=1e-3`, `method.alpha=0.5`, `data.fraction=0.05`) and are coerced to the
declared field type, so a typo or a wrong type fails before any model is built.
`method=ours` is shorthand for `method.name=ours`.

Defaults follow the weight-selection reference recipe for small datasets (Xu et al., ICLR
2024): AdamW, weight decay 0.05, cosine to 1e-6 with 50 of 300 warm-up epochs; ViT-T lr 2e-3 at
batch 512, ConvNeXt-F 4e-3 at batch 1024 (scale linearly for other batch sizes), drop path
0 / 0.1. Its augmentations (RandAugment, mixup, cutmix, random erasing) are not reproduced
here: the trainer uses `edgekd.data.torchdata.train_transform`; label smoothing is a field
(reference 0.1) but defaults to 0 so the loss equals the paper's eq. 5 exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgekd.data.config import AugConfig, DataConfig
from edgekd.errors import EdgeKDError
from edgekd.methods.registry import get_method, list_methods

PRESET_DIR = Path(__file__).parent / "configs"

METHODS = list_methods()
"""The `method=` names: the registered methods (`edgekd.methods`), a live view that lists one registered later too."""


@dataclass
class ModelConfig:
    """Teacher and student architectures (timm names) and how the teacher's weights are found."""

    teacher: str = "vit_small_patch16_224"
    teacher_weights: str | None = None  # `load_teacher(weights=...)`: None = timm hub, a file, or "lite-package"
    teacher_pretrained: bool = True
    student: str = "vit_tiny_patch16_224"
    image_size: int = 224
    teacher_kwargs: dict[str, Any] = field(default_factory=dict)
    student_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. drop_path_rate
    strategy: str = "uniform"  # element selection strategy for `select_dual` / `select_single`


@dataclass
class OptimConfig:
    """AdamW + cosine with linear warm-up, stepped per optimizer update (reference recipe)."""

    epochs: int = 300
    batch_size: int = 64  # per process
    eval_batch_size: int = 128
    lr: float = 2e-3
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 50.0
    warmup_lr: float = 1e-6
    grad_clip: float | None = None  # max global grad norm; None = off
    grad_accum: int = 1
    label_smoothing: float = 0.0  # reference recipe uses 0.1; 0 keeps eq. 5 exact


@dataclass
class MethodConfig:
    """The `method=` switch and its hyperparameters (paper: alpha 0.6, beta 0.9, tau 4 ViT / 3 ConvNeXt)."""

    name: str = "ours"
    alpha: float = 0.6  # weight of CE; (1 - alpha) * tau^2 weights the distillation term
    beta: float | str = 0.9  # EMA smoothing: theta_S' <- beta * theta_S' + (1 - beta) * theta_S
    # issue 19's variants of the EMA (paper = the defaults; ours, ours-swap, ours-cskd with S'):
    # beta "auto" = 0.9 unless the run is too short for it (edgekd.ema.auto_beta; results.json: ema_beta);
    # ema_every "step" (eq. 7) or "epoch"; beta_warmup: beta_t = min(beta, (1 + t) / (10 + t));
    # aux_view (ours, ours-swap): "same" tensor as S, or "augmented" = another augmentation of the image
    ema_every: str = "step"
    beta_warmup: bool = False
    aux_view: str = "same"
    tau: float = 4.0
    # how S' normalizes when it computes targets: "batch" (batch statistics, mean-teacher style),
    # "running" (eval mode), or "auto" = batch when the student has BatchNorm, else running
    # (ViT / ConvNeXt have none, so the paper's setting is unchanged)
    aux_bn: str = "auto"
    # ramp-up of the distillation term (mean teacher): "0" = off (paper), "N" = N epochs,
    # "P%" = P percent of all optimizer steps
    kd_rampup: str = "0"
    kd_rampup_shape: str = "sigmoid"  # sigmoid (exp(-5 (1-t)^2), mean teacher) or linear
    # ours-tfkd: "snapshot" (paper 4.5: last epoch's S as teacher), "self" (Yuan et al.'s two-stage
    # Tf-KD_self: the student architecture trained with CE first, then distilled), "reg" (virtual teacher)
    tfkd_mode: str = "snapshot"
    tfkd_correct_prob: float = 0.99  # ours-tfkd reg: virtual teacher's probability on the true class (reference: 0.99)
    tfkd_teacher_epochs: int | None = None  # ours-tfkd self: stage-1 epochs (None = optim.epochs)
    cskd_teacher: str = "self"  # ours-cskd: partner predicted by "self" (S, no grad, as published) or "aux" (S')
    kd_teacher_epochs: int = 2  # kd: fine-tune the teacher with CE this long, then distil
    kd_teacher_lr: float = 1e-4
    kd_student_init: str = "select"  # kd: "select" (single weight selection) or "timm" (default init)


@dataclass
class TrainConfig:
    """A whole run. `run_dir` receives everything listed in DEVELOPERS.md."""

    run_dir: str = "runs/train"
    seed: int = 0
    mixed_precision: str = "no"  # no | bf16 | fp16 (bf16 ~halves CPU step time here)
    deterministic: bool = True
    resume: bool = False
    stop_after: int | None = None  # stop (as if killed) after this many epochs in this process: resume tests
    num_workers: int = 0
    num_threads: int | None = None  # torch.set_num_threads; 1 is far faster when other jobs share the cores
    # batches in channels-last (NHWC) memory order: much faster depthwise convs and batch norms on a CPU, no slower
    # elsewhere (benchmarks/results/channels_last.md); the weights stay contiguous, so checkpoints are unchanged
    channels_last: bool = True
    keep_checkpoints: int = 2  # newest epoch checkpoints kept under RUN/checkpoints/
    log_every: int = 10  # steps between progress-bar loss updates
    trackers: str = "tensorboard"  # accelerate tracker name(s), comma separated, or "none"
    progress: bool = True
    val_limit: int | None = 50  # per class, from training-split images outside the subset; picks best.*
    # temperature scaling fitted on those validation images at the end (temperature), or none; the exported
    # artifacts carry T in their graph (export/onnx_export.py)
    calibration: str = "temperature"
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)  # training augmentation, e.g. aug.rotation=0
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    method: MethodConfig = field(default_factory=MethodConfig)

    def validate(self) -> TrainConfig:
        get_method(self.method.name)  # fails on a name nothing registered, listing those that are
        self._check_numbers()
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise EdgeKDError(f"mixed_precision={self.mixed_precision!r}; use no, bf16 or fp16")
        if self.calibration not in ("temperature", "none"):
            raise EdgeKDError(f"calibration={self.calibration!r} is not known; fix: use calibration=temperature or "
                              "calibration=none")
        if not 0.0 <= self.method.alpha <= 1.0:
            raise EdgeKDError("method.alpha must lie in [0, 1]")
        beta = self.method.beta
        if beta != "auto" and (isinstance(beta, str) or not 0.0 <= beta <= 1.0):
            raise EdgeKDError(f"method.beta={beta!r}; fix: give a number in [0, 1] or auto")
        if self.method.ema_every not in ("step", "epoch"):
            raise EdgeKDError(f"method.ema_every={self.method.ema_every!r}; use step or epoch")
        if self.method.aux_view not in ("same", "augmented"):
            raise EdgeKDError(f"method.aux_view={self.method.aux_view!r}; use same or augmented")
        if self.method.tfkd_mode not in ("snapshot", "self", "reg"):
            raise EdgeKDError(f"method.tfkd_mode={self.method.tfkd_mode!r}; use snapshot, self or reg")
        if self.method.aux_bn not in ("auto", "batch", "running"):
            raise EdgeKDError(f"method.aux_bn={self.method.aux_bn!r}; use auto, batch or running")
        if self.method.kd_rampup_shape not in ("sigmoid", "linear"):
            raise EdgeKDError(f"method.kd_rampup_shape={self.method.kd_rampup_shape!r}; use sigmoid or linear")
        rampup_steps(self.method.kd_rampup, 1, 1)  # fails early on a malformed value
        if self.method.cskd_teacher not in ("aux", "self"):
            raise EdgeKDError(f"method.cskd_teacher={self.method.cskd_teacher!r}; use aux or self")
        if self.method.kd_student_init not in ("select", "timm"):
            raise EdgeKDError(f"method.kd_student_init={self.method.kd_student_init!r}; use select or timm")
        if self.optim.epochs < 1 or self.optim.batch_size < 1 or self.optim.grad_accum < 1:
            raise EdgeKDError("optim.epochs, optim.batch_size and optim.grad_accum must be >= 1")
        self.data.validate()
        return self

    def _check_numbers(self) -> None:
        """Every float of optim.* and method.* is finite (nan slips through `x <= 0`), and lr and tau are > 0:
        otherwise torch fails deep inside the optimizer, or the run trains to NaN and says nothing."""
        for prefix, section in (("optim", self.optim), ("method", self.method)):
            for f in dataclasses.fields(section):
                value = getattr(section, f.name)
                if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple)
                                                                              else (value,))):
                    raise EdgeKDError(f"{prefix}.{f.name}={value} is not a finite number; fix: give a number, "
                                      f"e.g. the default {prefix}.{f.name}={f.default}")
        o = self.optim
        if not o.lr > 0:
            raise EdgeKDError(f"optim.lr={o.lr:g} must be > 0; fix: a positive learning rate, e.g. optim.lr=1e-3")
        if min(o.min_lr, o.warmup_lr, o.weight_decay, o.warmup_epochs) < 0:
            raise EdgeKDError("optim.min_lr, optim.warmup_lr, optim.weight_decay and optim.warmup_epochs must be "
                              ">= 0; fix: give 0 or a positive value")
        if not self.method.tau > 0:
            raise EdgeKDError(f"method.tau={self.method.tau:g} must be > 0; fix: e.g. method.tau=4 (the paper's ViT "
                              "value; 3 for ConvNeXt)")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def rampup_steps(spec: str, epochs: int, updates_per_epoch: int) -> int:
    """`method.kd_rampup` in optimizer steps: "0" off, "N" epochs (fractions allowed), "P%" of all steps."""
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            value = float(text[:-1]) / 100.0 * epochs * updates_per_epoch
        else:
            value = float(text) * updates_per_epoch
    except ValueError:
        raise EdgeKDError(f"method.kd_rampup={spec!r}; fix: give epochs (e.g. 2 or 0.5) or a share "
                          "of all steps (e.g. 10%), or 0 for none") from None
    if value < 0:
        raise EdgeKDError(f"method.kd_rampup={spec!r} is negative; fix: use 0 for no ramp-up")
    return int(round(value))


# ---------------------------------------------------------------------------------------------
# building dataclasses from plain dicts, with type coercion


def _plain(obj: Any) -> Any:
    """Tuples -> lists so `yaml.safe_dump` writes plain YAML."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (from YAML or a CLI string) to the annotated type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise EdgeKDError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is Any:
        return value
    if isinstance(value, str) and (origin in (list, tuple, dict) or tp in (list, tuple, dict)):
        value = yaml.safe_load(value)
    if origin in (list, tuple) or tp in (list, tuple):
        return _coerce_sequence(value, tp, key)
    if origin is dict or tp is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise EdgeKDError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return _coerce_scalar(value, tp, key)


def _coerce_union(value: Any, tp: Any, key: str) -> Any:
    """`X | None`: None-like text is None; otherwise the first member type that reads the value."""
    args = typing.get_args(tp)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~", "")):
        if type(None) in args:
            return None
    for a in args:
        if a is type(None):
            continue
        try:
            return _coerce(value, a, key)
        except (EdgeKDError, ValueError, TypeError):
            continue
    raise EdgeKDError(f"{key}: cannot read {value!r} as {tp}")


def _coerce_sequence(value: Any, tp: Any, key: str) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        value = [value]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise EdgeKDError(f"{key}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    inner = args[0] if args else Any
    out = [_coerce(v, inner, key) for v in value]
    return tuple(out) if (origin is tuple or tp is tuple) else out


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on", "y"):
            return True
        if s in ("0", "false", "no", "off", "n"):
            return False
        raise EdgeKDError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise EdgeKDError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise EdgeKDError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise EdgeKDError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise EdgeKDError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        return value if isinstance(value, str) else str(value)
    if tp is Path:
        return Path(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    try:
        return tp(value)
    except Exception:  # noqa: BLE001 - report as user error below
        raise EdgeKDError(f"{key}: cannot read {value!r} as {tp}") from None


def _unknown(key: str, choices: list[str]) -> EdgeKDError:
    near = difflib.get_close_matches(key.rsplit(".", 1)[-1], choices, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(choices)}"
    return EdgeKDError(f"unknown config key {key!r}{hint}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a (possibly partial) dict; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in (data or {}).items():
        if k not in names:
            raise _unknown(prefix + k, names)
        kwargs[k] = _coerce(v, hints[k], prefix + k)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def _field_type(cls: type, dotted: str) -> Any:
    """The annotated type at a dotted path (for validating override keys early)."""
    tp: Any = cls
    walked = []
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(tp):
            raise EdgeKDError(f"config key {dotted!r}: {'.'.join(walked)} has no sub-keys")
        hints = typing.get_type_hints(tp)
        if part not in hints:
            raise _unknown(dotted, list(hints))
        tp = hints[part]
        walked.append(part)
    return tp


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["optim.lr=1e-3", "method=ours"]` -> nested dict of raw strings (coerced later by type)."""
    tree: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise EdgeKDError(f"override {item!r} is not key=value (e.g. optim.lr=1e-3)")
        key, value = item.split("=", 1)
        key = key.strip()
        tp = _field_type(TrainConfig, key)
        if dataclasses.is_dataclass(tp):
            if key == "method":  # shorthand: method=ours
                key = "method.name"
            else:
                raise EdgeKDError(f"{key!r} is a section; set one of its fields, e.g. {key}.FIELD=VALUE")
        _set_dotted(tree, key, value)
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve_preset(path: str | Path) -> Path:
    """A file path, or a preset name from `edgekd/configs/` (with or without `.yaml`)."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (PRESET_DIR / p.name, PRESET_DIR / f"{p.name}.yaml"):
        if cand.is_file():
            return cand
    presets = ", ".join(sorted(q.stem for q in PRESET_DIR.glob("*.yaml")))
    raise EdgeKDError(f"config file {str(path)!r} not found; give a path or a preset name ({presets})")


def load_yaml(path: str | Path) -> dict[str, Any]:
    with open(resolve_preset(path)) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise EdgeKDError(f"{path}: expected a YAML mapping at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults <- YAML file <- `key=value` overrides, then validated."""
    raw = load_yaml(path) if path else {}
    raw = _merge(raw, parse_overrides(list(overrides or [])))
    return from_dict(TrainConfig, raw).validate()


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
