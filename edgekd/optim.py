"""Optimization: AdamW, the cosine learning-rate schedule with warm-up, and the KD ramp-up weight.

All three are stepped once per optimizer update (not per batch: gradient accumulation counts once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from edgekd.config import MethodConfig, OptimConfig, rampup_steps


def build_optimizer(model: nn.Module, o: OptimConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and norm/scale vectors (timm's filter_bias_and_bn)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), fused=fusable(model))


def teacher_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """The teacher fit (`Method.teacher_fit`): plain AdamW at a constant lr, decay on every parameter."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fusable(model))


def fusable(model: nn.Module) -> bool:
    """AdamW's fused kernel (one pass over all tensors) where torch has it: CPU and CUDA floating parameters.
    Why: the same update as torch's per-tensor CPU default, never slower on a whole training step here and
    up to a few percent faster (benchmarks/results/optimizer_step.md)."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in model.parameters())


def cosine_with_warmup(optimizer: torch.optim.Optimizer, o: OptimConfig, updates_per_epoch: int
                       ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from warmup_lr, then cosine to min_lr.

    Not passed to `accelerator.prepare` (which would step it once per process); registered for
    checkpointing instead, so it resumes exactly.
    """
    total = max(1, o.epochs * updates_per_epoch)
    warm = min(total - 1, int(round(o.warmup_epochs * updates_per_epoch)))

    def factor(step: int) -> float:
        if step < warm:
            lr = o.warmup_lr + (o.lr - o.warmup_lr) * step / max(1, warm)
        else:
            t = (step - warm) / max(1, total - warm)
            lr = o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))
        return lr / o.lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass(frozen=True)
class KDRampup:
    """Mean teacher's ramp of the distillation term (Tarvainen & Valpola 2017), opt-in via `method.kd_rampup`:
    early on, S' still carries a random classifier. `steps` = 0 is the paper's eq. 5 (weight 1 throughout)."""

    steps: int
    shape: str = "sigmoid"

    @classmethod
    def from_config(cls, m: MethodConfig, epochs: int, updates_per_epoch: int) -> KDRampup:
        return cls(rampup_steps(m.kd_rampup, epochs, updates_per_epoch), m.kd_rampup_shape)

    def weight(self, step: int) -> float:
        return rampup_weight(step, self.steps, self.shape)


def rampup_weight(step: int, ramp_steps: int, shape: str = "sigmoid") -> float:
    """Weight of the distillation term after `step` optimizer steps of a `ramp_steps` ramp.

    `sigmoid` is mean teacher's `exp(-5 (1 - t)^2)`, `linear` is `t`; 1 once the ramp is over
    or when there is none (`ramp_steps <= 0`).
    """
    if ramp_steps <= 0 or step >= ramp_steps:
        return 1.0
    t = max(0.0, step / ramp_steps)
    if shape == "sigmoid":
        return math.exp(-5.0 * (1.0 - t) ** 2)
    if shape == "linear":
        return t
    raise ValueError(f"unknown ramp-up shape {shape!r}; use sigmoid or linear")
