"""The `Method` protocol: what a training method decides, asked by `edgekd.train` at fixed points.

In the order the trainer asks:

    build(num_classes) -> Networks         S, and S' or a teacher when the method has one
    train_dataset(dataset, labels)         what the loader iterates (CS-KD adds same-class partners, ours a 2nd view)
    teacher_fit()                          fit `Networks.teacher` with CE before S trains (kd, Tf-KD_self)
    on_train_start(nets, total_steps, step)
                                           the run's length is known (step > 0: resumed); EMA resolves beta=auto
    warning(nets, total_steps)             a line printed before training (EMA: budget too short)
    on_epoch_start(nets, epoch)            e.g. TF-KD's snapshot of S
    targets(nets, batch, accelerator)      logits S learns from, without gradient; None = CE only
    loss(logits, targets, labels, kd_weight)
    after_step(nets)                       after every optimizer step (EMA, eq. 7)
    on_epoch_end(nets, epoch) -> columns   after the epoch's last step, before validation and the checkpoint
                                           (EMA once per epoch); extra metrics.csv values (aux_distance)
    saved_networks(nets)                   what the run directory keeps beside S, with its card
    summary(nets)                          what results.json records of the method (EMA: the beta it used)

Every hook has a do-nothing default, so a CE-only baseline implements `build` alone. Torch and
the training modules are imported inside the hooks: `edgekd.config` lists the methods (importing
this package) without importing torch.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor, nn
    from torch.utils.data import Dataset

    from edgekd.config import TrainConfig
    from edgekd.selection import SelectionReport


@dataclass
class Networks:
    student: nn.Module  # S: trained, evaluated, saved as model.safetensors (DDP-wrapped once prepared)
    aux: nn.Module | None = None  # S': a target network that never trains (EMA, snapshot); not DDP-wrapped
    teacher: nn.Module | None = None  # frozen before S trains (fitted first if `Method.teacher_fit` says so)
    selection: dict[str, Any] | None = None  # weight-selection summary for results.json


@dataclass(frozen=True)
class TeacherFit:
    """CE fine-tuning of `Networks.teacher` at a constant learning rate, done once per run."""

    epochs: int
    lr: float


@dataclass
class SavedNetwork:
    """A network kept as `RUN/STEM.safetensors` with a card saying what it is."""

    model: nn.Module
    stem: str
    role: str  # edgekd.shared.card.ROLES
    architecture: str
    model_kwargs: dict[str, Any]


class Method:
    """One training method; `edgekd.train` makes one per run: `get_method(name)(cfg)`."""

    name: ClassVar[str]  # set by @register_method
    #: S starts from weights selected from the pretrained teacher, which is never trained on the data:
    #: `edgekd explain` rebuilds it from config.yaml to show it beside S
    teacher_donates_weights: ClassVar[bool] = False

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def build(self, num_classes: int) -> Networks:
        raise NotImplementedError

    def train_dataset(self, dataset: Dataset, labels: list[int]) -> Dataset:
        return dataset

    def teacher_fit(self) -> TeacherFit | None:
        return None

    def on_train_start(self, nets: Networks, total_steps: int, step: int) -> None:
        """`total_steps`: optimizer steps of the whole run; `step`: those already done (a resumed run)."""

    def warning(self, nets: Networks, total_steps: int) -> str | None:
        return None

    def on_epoch_start(self, nets: Networks, epoch: int) -> None:
        pass

    def targets(self, nets: Networks, batch: tuple, accelerator: Accelerator) -> Tensor | None:
        return None

    def loss(self, logits: Tensor, targets: Tensor | None, labels: Tensor, kd_weight: float
             ) -> tuple[Tensor, dict[str, float]]:
        """Eq. 5 against `targets` (`kd_weight`: the KD ramp-up), or plain CE when there are none."""
        from edgekd import losses

        m, ls = self.cfg.method, self.cfg.optim.label_smoothing
        if targets is None:
            ce = losses.ce_loss(logits, labels, ls)
            return ce, {"ce": ce.item(), "kd": 0.0}
        return losses.skd_loss(logits, targets, labels, m.alpha, m.tau, ls, kd_weight=kd_weight)

    def after_step(self, nets: Networks) -> None:
        pass

    def on_epoch_end(self, nets: Networks, epoch: int) -> dict[str, float]:
        """Values for `edgekd.rundir.METRIC_FIELDS` columns the method fills (the others stay empty)."""
        return {}

    def saved_networks(self, nets: Networks) -> list[SavedNetwork]:
        """S' as aux.safetensors (it has the student's architecture); methods with a teacher add it."""
        return [self.student_shaped(nets.aux, "aux", "aux")] if nets.aux is not None else []

    def summary(self, nets: Networks) -> dict[str, Any]:
        """Entries for results.json: what the method resolved at run time (a config value says what was asked)."""
        return {}

    # ---- building blocks for the hooks above

    def aux_bn(self, nets: Networks) -> str | None:
        """How S' normalizes when it predicts targets (`method.aux_bn`; auto = batch statistics for
        BatchNorm students, eval mode otherwise); None without S'."""
        from edgekd.ema import has_batchnorm

        if nets.aux is None:
            return None
        if self.cfg.method.aux_bn != "auto":
            return self.cfg.method.aux_bn
        return "batch" if has_batchnorm(nets.aux) else "running"

    def selection_teacher(self) -> nn.Module:
        """The pretrained teacher that students' weights are selected from (`model.teacher*`)."""
        from edgekd.models import load_teacher

        m = self.cfg.model
        return load_teacher(m.teacher, weights=m.teacher_weights, pretrained=m.teacher_pretrained, **m.teacher_kwargs)

    def new_student(self, num_classes: int, init: str = "timm") -> nn.Module:
        from edgekd.models import create_student

        return create_student(self.cfg.model.student, num_classes, init, **self.cfg.model.student_kwargs)

    def student_shaped(self, model: nn.Module, stem: str, role: str) -> SavedNetwork:
        return SavedNetwork(model, stem, role, self.cfg.model.student, dict(self.cfg.model.student_kwargs))


def selection_summary(report: SelectionReport) -> dict[str, Any]:
    """The part of a weight-selection report that results.json keeps."""
    return {"strategy": report.strategy, "seed": report.seed, "roles": report.roles, "teacher": report.teacher,
            "tensors": len(report.tensors), "classifier_keys": report.classifier_keys}


def predict_targets(net: nn.Module, x: Tensor, accelerator: Accelerator, batch_statistics: bool = False) -> Tensor:
    """`net(x)` without gradient under the run's autocast; `batch_statistics`: BatchNorm normalizes
    with the batch (`edgekd.ema.batch_statistics`, for S')."""
    import torch

    from edgekd.ema import batch_statistics as batch_norm

    with torch.no_grad(), accelerator.autocast(), batch_norm(net) if batch_statistics else nullcontext():
        return net(x)
