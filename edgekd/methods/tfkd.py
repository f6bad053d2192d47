"""`ours-tfkd` (paper section 4.5): dual weight selection with TF-KD's targets (Yuan et al. 2020).

`method.tfkd_mode`:
- `snapshot` (the paper's variant): S' is a frozen copy of S refreshed at every epoch start, so
  last epoch's S teaches this epoch (S' starts from the auxiliary subset).
- `self` (the published two-stage Tf-KD_self): a network of the student's architecture, starting
  from the auxiliary subset, is first trained with CE, then frozen and distilled into S.
- `reg` (Tf-KD_reg): a virtual teacher (`edgekd.losses.virtual_teacher`), no second network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.methods.base import Method, Networks, SavedNetwork, TeacherFit, predict_targets
from edgekd.methods.ours import dual_students
from edgekd.methods.registry import register_method

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor


@register_method("ours-tfkd")
class OursTFKD(Method):
    teacher_donates_weights = True

    @property
    def mode(self) -> str:
        return self.cfg.method.tfkd_mode

    def build(self, num_classes: int) -> Networks:
        from edgekd.ema import freeze

        s, s_aux, selection = dual_students(self, num_classes)
        if self.mode == "self":
            return Networks(s, teacher=s_aux.train(), selection=selection)
        return Networks(s, freeze(s_aux) if self.mode == "snapshot" else None, selection=selection)

    def teacher_fit(self) -> TeacherFit | None:
        if self.mode != "self":
            return None
        return TeacherFit(self.cfg.method.tfkd_teacher_epochs or self.cfg.optim.epochs, self.cfg.optim.lr)

    def on_epoch_start(self, nets: Networks, epoch: int) -> None:
        from edgekd.ema import copy_weights

        if nets.aux is not None and epoch > 0:
            copy_weights(nets.aux, nets.student)  # snapshot: last epoch's S is this epoch's teacher

    def targets(self, nets: Networks, batch: tuple, accelerator: Accelerator) -> Tensor | None:
        if nets.teacher is not None:
            return predict_targets(nets.teacher, batch[0], accelerator)
        if nets.aux is not None:
            return predict_targets(nets.aux, batch[0], accelerator, self.aux_bn(nets) == "batch")
        return None

    def loss(self, logits: Tensor, targets: Tensor | None, labels: Tensor, kd_weight: float
             ) -> tuple[Tensor, dict[str, float]]:
        from edgekd import losses

        if self.mode != "reg":
            return super().loss(logits, targets, labels, kd_weight)
        m = self.cfg.method
        return losses.tfkd_reg_loss(logits, labels, m.alpha, m.tau, m.tfkd_correct_prob,
                                    self.cfg.optim.label_smoothing, kd_weight=kd_weight)

    def saved_networks(self, nets: Networks) -> list[SavedNetwork]:
        """The Tf-KD_self stage-1 network has the student's architecture."""
        stage1 = [self.student_shaped(nets.teacher, "teacher", "teacher")] if nets.teacher is not None else []
        return super().saved_networks(nets) + stage1
