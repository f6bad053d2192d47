"""The paper's method: dual weight selection + EMA self-distillation (sections 3.1-3.2), and its swap.

`ours`: S and S' start from complementary weight subsets of the teacher; S learns from S''s
logits (eq. 5) and S' follows S by EMA after every optimizer step (eq. 7).
`ours-swap` (section 4.3): the subsets exchanged, the auxiliary subset trains and the main one teaches.

Variants, each one `method.*` option, the paper's setting by default (issue 19: with beta 0.9 per
step S' is S to within a few steps' lag after the first epochs, so ours cannot differ from cm1):
`beta` (a number, or `auto`: `edgekd.ema.auto_beta`), `ema_every=epoch` (one EMA update per
epoch), `beta_warmup` (`edgekd.ema.warmup_beta`) and, for `ours`/`ours-swap`, `aux_view=augmented`
(S' predicts on another augmentation of the same images: `edgekd.data.torchdata.TwoViews`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekd.methods.base import Method, Networks, predict_targets, selection_summary
from edgekd.methods.registry import register_method

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor, nn
    from torch.utils.data import Dataset

    from edgekd.data.torchdata import TwoViews


def dual_students(method: Method, num_classes: int) -> tuple[nn.Module, nn.Module, dict]:
    """S and S' from complementary subsets of the selection teacher, and the selection summary."""
    from edgekd.selection import select_dual

    teacher = method.selection_teacher()
    s, s_aux = method.new_student(num_classes), method.new_student(num_classes)
    report = select_dual(teacher, s, s_aux, method.cfg.model.strategy, method.cfg.seed)
    return s, s_aux, selection_summary(report)


class EMASelfDistillation(Method):
    """S' is a frozen network that follows S by EMA (when the method has S'): after every optimizer
    step (eq. 7), or once per epoch with `method.ema_every=epoch`."""

    teacher_donates_weights = True

    def on_train_start(self, nets: Networks, total_steps: int, step: int) -> None:
        """The run's EMA updates (`total`), the beta they use and the count a resumed run has done."""
        from edgekd.ema import EMASchedule, auto_beta

        m, epochs = self.cfg.method, self.cfg.optim.epochs
        per_epoch = max(1, total_steps // epochs)
        self.total, done = (total_steps, step) if m.ema_every == "step" else (epochs, step // per_epoch)
        self.ema = EMASchedule(auto_beta(self.total) if m.beta == "auto" else m.beta, m.beta_warmup, done)

    def warning(self, nets: Networks, total_steps: int) -> str | None:
        """A run short next to the EMA horizon 1/(1 - beta) leaves S' far behind S.

        benchmarks/results/short_budget.md measures what that costs against cm1.
        """
        from edgekd.ema import horizon, longest_horizon

        span = horizon(self.ema.beta)
        if nets.aux is None or span <= longest_horizon(self.total):
            return None
        unit = "optimizer steps" if self.cfg.method.ema_every == "step" else "epochs"
        return (f"warning: {self.total} {unit} is short for EMA self-distillation: S' averages the last "
                f"~{span:.0f} {unit} of S, so its targets lag far behind; on a 24-step budget ours trailed cm1 "
                "(benchmarks/results/short_budget.md). Train longer, set method.beta=auto, or compare with "
                "method=cm1.")

    def after_step(self, nets: Networks) -> None:
        if self.cfg.method.ema_every == "step":
            self.ema_update(nets)

    def on_epoch_end(self, nets: Networks, epoch: int) -> dict[str, float]:
        from edgekd.ema import relative_distance

        if nets.aux is None:
            return {}
        if self.cfg.method.ema_every == "epoch":
            self.ema_update(nets)
        return {"aux_distance": relative_distance(nets.aux, nets.student)}

    def ema_update(self, nets: Networks) -> None:
        from edgekd.ema import ema_update

        if nets.aux is not None:
            ema_update(nets.aux, nets.student, self.ema.next_beta())  # eq. 7

    def summary(self, nets: Networks) -> dict[str, Any]:
        if nets.aux is None:
            return {}
        return {"ema_beta": self.ema.beta, "ema_updates": self.ema.updates}


@register_method("ours")
class Ours(EMASelfDistillation):
    swap = False  # ours-swap: the auxiliary subset trains, the main subset teaches
    views: TwoViews | None = None  # aux_view=augmented: batches are (view 1, label, view 2)

    def build(self, num_classes: int) -> Networks:
        from edgekd.ema import freeze

        s, s_aux, selection = dual_students(self, num_classes)
        if self.swap:
            s, s_aux = s_aux, s
        return Networks(s, freeze(s_aux), selection=selection)

    def train_dataset(self, dataset: Dataset, labels: list[int]) -> Dataset:
        if self.cfg.method.aux_view == "same":
            return dataset
        from edgekd.data.torchdata import TwoViews

        self.views = TwoViews(dataset, self.cfg.seed)
        return self.views

    def on_epoch_start(self, nets: Networks, epoch: int) -> None:
        if self.views is not None:
            self.views.set_epoch(epoch)  # new second views every epoch, reproducibly

    def targets(self, nets: Networks, batch: tuple, accelerator: Accelerator) -> Tensor:
        x_aux = batch[2] if self.views is not None else batch[0]
        return predict_targets(nets.aux, x_aux, accelerator, self.aux_bn(nets) == "batch")


@register_method("ours-swap")
class OursSwap(Ours):
    swap = True
