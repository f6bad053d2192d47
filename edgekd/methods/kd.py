"""`kd`: classic knowledge distillation (Hinton et al. 2015) from the teacher fine-tuned on the same data.

The teacher gets a fresh classifier for the task and is fine-tuned with CE first
(`method.kd_teacher_epochs` at `method.kd_teacher_lr`), then frozen; S starts from single weight
selection (`method.kd_student_init=select`) or timm's init (`timm`) and learns eq. 5 against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.methods.base import Method, Networks, SavedNetwork, TeacherFit, predict_targets, selection_summary
from edgekd.methods.registry import register_method

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor


@register_method("kd")
class KD(Method):
    def build(self, num_classes: int) -> Networks:
        from edgekd.selection import select_single

        teacher = self.selection_teacher()
        s = self.new_student(num_classes)
        selection = None
        if self.cfg.method.kd_student_init == "select":
            selection = selection_summary(select_single(teacher, s, self.cfg.model.strategy, self.cfg.seed))
        teacher.reset_classifier(num_classes)
        return Networks(s, teacher=teacher.train(), selection=selection)

    def teacher_fit(self) -> TeacherFit:
        return TeacherFit(self.cfg.method.kd_teacher_epochs, self.cfg.method.kd_teacher_lr)

    def targets(self, nets: Networks, batch: tuple, accelerator: Accelerator) -> Tensor:
        return predict_targets(nets.teacher, batch[0], accelerator)

    def saved_networks(self, nets: Networks) -> list[SavedNetwork]:
        m = self.cfg.model
        return [SavedNetwork(nets.teacher, "teacher", "teacher", m.teacher, dict(m.teacher_kwargs))]
