"""The paper's method: dual weight selection + EMA self-distillation (sections 3.1-3.2), and its swap.

`ours`: S and S' start from complementary weight subsets of the teacher; S learns from S''s
logits (eq. 5) and S' follows S by EMA after every optimizer step (eq. 7).
`ours-swap` (section 4.3): the subsets exchanged, the auxiliary subset trains and the main one teaches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.methods.base import Method, Networks, predict_targets, selection_summary
from edgekd.methods.registry import register_method

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor, nn


def dual_students(method: Method, num_classes: int) -> tuple[nn.Module, nn.Module, dict]:
    """S and S' from complementary subsets of the selection teacher, and the selection summary."""
    from edgekd.selection import select_dual

    teacher = method.selection_teacher()
    s, s_aux = method.new_student(num_classes), method.new_student(num_classes)
    report = select_dual(teacher, s, s_aux, method.cfg.model.strategy, method.cfg.seed)
    return s, s_aux, selection_summary(report)


class EMASelfDistillation(Method):
    """S' is a frozen network that follows S by EMA after every optimizer step (when the method has S')."""

    teacher_donates_weights = True

    def warning(self, nets: Networks, total_steps: int) -> str | None:
        """A run short next to the EMA horizon 1/(1 - beta) leaves S' far behind S.

        benchmarks/results/short_budget.md measures what that costs against cm1.
        """
        horizon = 1.0 / max(1e-9, 1.0 - self.cfg.method.beta)
        if nets.aux is None or total_steps >= 10 * horizon:
            return None
        return (f"warning: {total_steps} optimizer steps is short for EMA self-distillation: S' averages the last "
                f"~{horizon:.0f} steps of S, so its targets lag far behind; on a 24-step budget ours trailed cm1 "
                "(benchmarks/results/short_budget.md). Train longer, or compare with method=cm1.")

    def after_step(self, nets: Networks) -> None:
        from edgekd.ema import ema_update

        if nets.aux is not None:
            ema_update(nets.aux, nets.student, self.cfg.method.beta)  # eq. 7


@register_method("ours")
class Ours(EMASelfDistillation):
    swap = False  # ours-swap: the auxiliary subset trains, the main subset teaches

    def build(self, num_classes: int) -> Networks:
        from edgekd.ema import freeze

        s, s_aux, selection = dual_students(self, num_classes)
        if self.swap:
            s, s_aux = s_aux, s
        return Networks(s, freeze(s_aux), selection=selection)

    def targets(self, nets: Networks, batch: tuple, accelerator: Accelerator) -> Tensor:
        return predict_targets(nets.aux, batch[0], accelerator, self.aux_bn(nets) == "batch")


@register_method("ours-swap")
class OursSwap(Ours):
    swap = True
