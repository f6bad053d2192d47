"""Losses: CE, the paper's EMA self-distillation (SKD), CS-KD and TF-KD.

Notation follows the paper (section 3.2): z^S are the main student's logits, z^S' the
auxiliary student's, p = softmax(z / tau). Every KL term is
`sum_k p_target_k * log(p_target_k / p_S_k)` averaged over the batch ("batchmean"), i.e. eq. 3
per sample and a mean over samples; the paper leaves the batch reduction open and batch-mean
is the reduction under which the tau^2 factor of eq. 5 keeps gradient magnitudes comparable to
CE (Hinton et al.). The target distribution is always detached: no gradient reaches S'.

CE is always computed at tau = 1 on the hard labels (eq. 4); only the distillation term is
tempered, and tau^2 restores its gradient scale.

Choices the paper leaves open (all documented where they are made):
- SKD: `alpha * CE + w * (1 - alpha) * tau^2 * KL(p_S' || p_S)`: eq. 5 exactly when the ramp-up
  weight `w` is 1 (the default); `w` < 1 early in training is mean teacher's ramp-up
  (`edgekd.optim.KDRampup`, opt-in via `method.kd_rampup`).
- CS-KD (Yun et al. 2020, "class-wise self-knowledge distillation"; the paper's section 4.5
  calls it class-similarity-based, but cites this method): the partner is another training
  sample of the same class (`ClassPairDataset`) and, as published, S itself predicts it without
  gradient (`method.cskd_teacher=self`, the default; `aux` lets S' predict it). The loss is
  eq. 5 with the partner's distribution as target (the original adds `lambda * tau^2 * KL`
  to a full CE; we keep the paper's alpha weighting).
- TF-KD (Yuan et al. 2020), `method.tfkd_mode`:
  `snapshot` is the paper's section 4.5 variant ("outputs from previous epochs"): a frozen copy
  of S refreshed at every epoch start, starting from S'. `self` is the published Tf-KD_self, in
  two stages: a network of the student architecture (initialized from S' weights) is first
  trained normally with CE, then frozen and distilled into S. `reg` is the published Tf-KD_reg
  virtual teacher: `a` (0.99 in the reference code) on the true class and `(1 - a) / (K - 1)`
  elsewhere, softened as in the reference code (softmax of that vector / tau).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def ce_loss(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Eq. 4, batch mean. Computed in float32 so bf16 autocast does not round the loss."""
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)


def kl_div(student_logits: Tensor, target_probs: Tensor, tau: float) -> Tensor:
    """Eq. 3 with a given target distribution: batch-mean `KL(target || softmax(z_S / tau))`.

    `target_probs` is detached here, so whatever produced it never receives a gradient.
    """
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=-1)
    t = target_probs.detach().float()
    # xlogy makes 0 * log 0 = 0 for one-hot-like targets
    per_sample = (torch.xlogy(t, t) - t * log_p_s).sum(dim=-1)
    return per_sample.mean()


def soft_targets(logits: Tensor, tau: float) -> Tensor:
    """Eq. 2: tempered softmax of the auxiliary model's logits (detached)."""
    return F.softmax(logits.detach().float() / tau, dim=-1)


def _eq5(ce: Tensor, kd: Tensor, alpha: float, tau: float, kd_weight: float) -> tuple[Tensor, dict[str, float]]:
    loss = alpha * ce + kd_weight * (1.0 - alpha) * tau**2 * kd
    return loss, {"ce": ce.item(), "kd": kd.item()}


def skd_loss(
    logits_s: Tensor,
    logits_aux: Tensor,
    target: Tensor,
    alpha: float,
    tau: float,
    label_smoothing: float = 0.0,
    kd_weight: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 5: `alpha * CE(S) + w * (1 - alpha) * tau^2 * KL(p_S' || p_S)`; returns (loss, parts).

    Also CS-KD (the partner images' logits as `logits_aux`) and classic KD (the teacher's).
    """
    ce = ce_loss(logits_s, target, label_smoothing)
    kd = kl_div(logits_s, soft_targets(logits_aux, tau), tau)
    return _eq5(ce, kd, alpha, tau, kd_weight)


def virtual_teacher(target: Tensor, num_classes: int, correct_prob: float, tau: float) -> Tensor:
    """TF-KD reg: `a` on the true class, `(1-a)/(K-1)` elsewhere, then softmax(. / tau).

    The extra softmax over the probability vector follows the TF-KD reference code; it makes
    the target much flatter than `a` for tau > 1 (a label-smoothing-like regularizer).
    """
    off = (1.0 - correct_prob) / max(num_classes - 1, 1)
    dist = torch.full((target.shape[0], num_classes), off, device=target.device, dtype=torch.float32)
    dist.scatter_(1, target.view(-1, 1), correct_prob)
    return F.softmax(dist / tau, dim=-1)


def tfkd_reg_loss(
    logits_s: Tensor,
    target: Tensor,
    alpha: float,
    tau: float,
    correct_prob: float = 0.99,
    label_smoothing: float = 0.0,
    kd_weight: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """TF-KD regularization variant: eq. 5 with the virtual teacher as p_S'."""
    ce = ce_loss(logits_s, target, label_smoothing)
    kd = kl_div(logits_s, virtual_teacher(target, logits_s.shape[-1], correct_prob, tau), tau)
    return _eq5(ce, kd, alpha, tau, kd_weight)


# ---------------------------------------------------------------------------------------------
# CS-KD pair sampling


class ClassPairDataset(torch.utils.data.Dataset):
    """Wraps a (x, y) dataset into (x, y, x_partner) with a same-class partner (CS-KD).

    Call `set_epoch(e)` each epoch so partners change between epochs but stay reproducible.
    """

    def __init__(self, base, labels: list[int], seed: int = 0):
        self.base, self.labels, self.seed, self.epoch = base, [int(y) for y in labels], int(seed), 0
        self._by_class: dict[int, list[int]] = {}
        for j, y in enumerate(self.labels):
            self._by_class.setdefault(y, []).append(j)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def partner(self, i: int) -> int:
        import numpy as np

        same = self._by_class[self.labels[i]]
        if len(same) == 1:
            return i
        rng = np.random.default_rng([self.seed, self.epoch, i])
        k = int(rng.integers(len(same) - 1))
        j = same[k]
        return same[-1] if j == i else j  # skip i: draw from the others, uniformly

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i][:2]
        return x, y, self.base[self.partner(i)][0]
