"""`ours-cskd` (paper section 4.5): EMA self-distillation with CS-KD's targets (Yun et al. 2020).

The target is the prediction for another training image of the same class (`ClassPairDataset`),
made by S itself without gradient as published (`method.cskd_teacher=self`, no second network)
or by S' (`aux`, which then follows S by EMA as in `ours`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.methods.base import Networks, predict_targets
from edgekd.methods.ours import EMASelfDistillation, dual_students
from edgekd.methods.registry import register_method

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor
    from torch.utils.data import Dataset


@register_method("ours-cskd")
class OursCSKD(EMASelfDistillation):
    def build(self, num_classes: int) -> Networks:
        from edgekd.ema import freeze

        s, s_aux, selection = dual_students(self, num_classes)
        aux = freeze(s_aux) if self.cfg.method.cskd_teacher == "aux" else None
        return Networks(s, aux, selection=selection)

    def train_dataset(self, dataset: Dataset, labels: list[int]) -> Dataset:
        from edgekd.losses import ClassPairDataset

        self.pairs = ClassPairDataset(dataset, labels, self.cfg.seed)
        return self.pairs

    def on_epoch_start(self, nets: Networks, epoch: int) -> None:
        self.pairs.set_epoch(epoch)  # new partners every epoch, reproducibly

    def targets(self, nets: Networks, batch: tuple, accelerator: Accelerator) -> Tensor:
        from edgekd.ema import unwrap

        if nets.aux is None:
            return predict_targets(unwrap(nets.student), batch[2], accelerator)
        return predict_targets(nets.aux, batch[2], accelerator, self.aux_bn(nets) == "batch")
