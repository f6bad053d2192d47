"""Losses: CE, the paper's EMA self-distillation (SKD), CS-KD and TF-KD.

Notation follows the paper (section 3.2): z^S are the main student's logits, z^S' the
auxiliary student's, p = softmax(z / tau). Every KL term is
`sum_k p_target_k * log(p_target_k / p_S_k)` averaged over the batch ("batchmean"), i.e. eq. 3
per sample and a mean over samples; the paper leaves the batch reduction open and batch-mean
is the reduction under which the tau^2 factor of eq. 5 keeps gradient magnitudes comparable to
CE (Hinton et al.). The target distribution is always detached: no gradient reaches S'.

Choices the paper leaves open (all documented where they are made):
- SKD: `alpha * CE + (1 - alpha) * tau^2 * KL(p_S' || p_S)` exactly as eq. 5.
- CS-KD (Yun et al. 2020, "class-wise self-knowledge distillation"; the paper's section 4.5
  calls it class-similarity-based, but cites this method): the partner is another training
  sample of the same class (`ClassPairDataset`), forwarded without gradient. We keep
  the paper's alpha-weighting of eq. 5 (the original adds `lambda * tau^2 * KL` to a full CE);
  the partner's prediction comes from S' by default (dual selection keeps its meaning), or from
  S itself without gradient as in the original (`method.cskd_teacher=self`).
- TF-KD (Yuan et al. 2020): "self" uses the student's own earlier predictions as the teacher
  (the paper: "outputs from previous epochs"); here a frozen snapshot refreshed every epoch,
  starting from the auxiliary selected student. "reg" uses the virtual teacher
  `a` on the true class and `(1 - a) / (K - 1)` elsewhere, softened as in the reference code
  (softmax of that vector / tau), with the same alpha/tau^2 weighting as eq. 5.
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


def skd_loss(
    logits_s: Tensor,
    logits_aux: Tensor,
    target: Tensor,
    alpha: float,
    tau: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 5: `alpha * CE(S) + (1 - alpha) * tau^2 * KL(p_S' || p_S)`; returns (loss, parts)."""
    ce = ce_loss(logits_s, target, label_smoothing)
    kd = kl_div(logits_s, soft_targets(logits_aux, tau), tau)
    loss = alpha * ce + (1.0 - alpha) * tau**2 * kd
    return loss, {"ce": ce.item(), "kd": kd.item()}


def cskd_loss(
    logits_s: Tensor,
    logits_partner: Tensor,
    target: Tensor,
    alpha: float,
    tau: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """Class-wise SKD: KL between the tempered predictions of a sample and of a same-class partner.

    `logits_partner` are the predictions on the partner images (forward without gradient);
    the formula is eq. 5 with the partner's distribution as the target.
    """
    return skd_loss(logits_s, logits_partner, target, alpha, tau, label_smoothing)


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
    correct_prob: float = 0.9,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """TF-KD regularization variant: eq. 5 with the virtual teacher as p_S'."""
    ce = ce_loss(logits_s, target, label_smoothing)
    kd = kl_div(logits_s, virtual_teacher(target, logits_s.shape[-1], correct_prob, tau), tau)
    loss = alpha * ce + (1.0 - alpha) * tau**2 * kd
    return loss, {"ce": ce.item(), "kd": kd.item()}


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
