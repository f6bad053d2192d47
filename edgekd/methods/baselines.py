"""The paper's comparison methods (section 4), all trained with CE only.

cm1: single weight selection from the teacher; cm2 / cm3 / cm4: no teacher, the student starts
from timm's default / Xavier / Kaiming initialization (`edgekd.models.reinit_weights`).
"""

from __future__ import annotations

from edgekd.methods.base import Method, Networks, selection_summary
from edgekd.methods.registry import register_method


@register_method("cm1")
class SingleSelection(Method):
    teacher_donates_weights = True

    def build(self, num_classes: int) -> Networks:
        from edgekd.selection import select_single

        teacher = self.selection_teacher()
        s = self.new_student(num_classes)
        report = select_single(teacher, s, self.cfg.model.strategy, self.cfg.seed)
        return Networks(s, selection=selection_summary(report))


@register_method("cm2")
class TimmInit(Method):
    init = "timm"

    def build(self, num_classes: int) -> Networks:
        return Networks(self.new_student(num_classes, self.init))


@register_method("cm3")
class XavierInit(TimmInit):
    init = "xavier"


@register_method("cm4")
class KaimingInit(TimmInit):
    init = "kaiming"
