"""EMA of the main student S into the auxiliary student S' (paper eq. 7), buffers included.

`theta_S' <- beta * theta_S' + (1 - beta) * theta_S` after every optimizer step. Floating
buffers (BatchNorm running mean/var) follow the same rule; integer buffers
(`num_batches_tracked`) are copied. S' never trains: its parameters have
`requires_grad=False` and it is not wrapped by DDP.

Identical on every rank: DDP keeps S's parameters identical across ranks, but BatchNorm
buffers are updated locally by each rank's forward and only re-broadcast from rank 0 at the
next forward. `ema_update` therefore broadcasts S's floating buffers from rank 0 first (what DDP
would do anyway), so every rank applies the same update to S'.

Which beta each update uses is `EMASchedule`'s business: the paper's constant beta after every
optimizer step by default; `method.beta=auto` (`auto_beta`), a warm-up (`warmup_beta`) and one
update per epoch are the variants that test whether S' keeps more of its complementary start.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / `torch.compile` / accelerate wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def freeze(model: nn.Module) -> nn.Module:
    """S' is a target network: no gradients, always in eval mode (fixed BN stats, no dropout)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def has_batchnorm(model: nn.Module) -> bool:
    """True when the model normalizes with BatchNorm (EfficientNet, MobileNet, ResNet, ...)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Forward S' with BatchNorm batch statistics, leaving its running buffers untouched.

    Why: S' in eval mode normalizes with running statistics that lag behind its EMA weights
    (they start from ImageNet statistics), so even an exact copy of S gives targets that pull S
    away. Mean teacher (Tarvainen & Valpola, 2017) runs its EMA teacher with batch statistics too.
    Only BatchNorm layers switch (dropout / drop path stay off); `track_running_stats=False`
    makes BatchNorm use the batch and skip the buffer update. Models without BatchNorm are unchanged.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in bns]
    for m in bns:
        m.training, m.track_running_stats = True, False
    try:
        yield model
    finally:
        for m, (training, track) in zip(bns, saved):
            m.training, m.track_running_stats = training, track


def _sync_buffers_from_rank0(model: nn.Module) -> None:
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    for b in model.buffers():
        dist.broadcast(b.data, src=0)


@torch.no_grad()
def ema_update(aux: nn.Module, main: nn.Module, beta: float) -> None:
    """Eq. 7 in place on `aux`; `main` may be DDP-wrapped."""
    main = unwrap(main)
    _sync_buffers_from_rank0(main)
    a_params = [p for p in aux.parameters()]
    m_params = [p.detach() for p in main.parameters()]
    if len(a_params) != len(m_params):
        raise ValueError("EMA: S and S' have different parameter lists (different architectures?)")
    # lerp(a, m, w) = a + w * (m - a) = beta * a + (1 - beta) * m
    torch._foreach_lerp_(a_params, m_params, 1.0 - beta)
    for a_buf, m_buf in zip(aux.buffers(), main.buffers()):
        if a_buf.dtype.is_floating_point:
            a_buf.lerp_(m_buf.detach().to(a_buf.dtype), 1.0 - beta)
        else:
            a_buf.copy_(m_buf)


PAPER_BETA = 0.9  # section 4.1; Fig. 6: larger betas over-smooth and cost accuracy
AUTO_HORIZON_SHARE = 0.1  # beta=auto: S' averages at most this share of the run's EMA updates


def horizon(beta: float) -> float:
    """How many recent updates of S the EMA averages: 1 / (1 - beta) (inf at beta = 1)."""
    return math.inf if beta >= 1.0 else 1.0 / (1.0 - beta)


def longest_horizon(updates: int) -> float:
    """The longest horizon a run of `updates` EMA updates affords: 10 % of them, at least 1 (S' = last S)."""
    return max(1.0, AUTO_HORIZON_SHARE * updates)


def auto_beta(updates: int) -> float:
    """`method.beta=auto`: the paper's 0.9 unless the run is too short for its 10-update horizon, then
    the beta whose horizon is `longest_horizon(updates)`: 24 updates -> horizon 2.4, beta 0.583; 10
    or fewer -> beta 0 (S' is the previous S).

    Capped at the paper's value rather than growing with the run: auto is the fix for short budgets
    (S' lagging far behind S, benchmarks/results/short_budget.md), and Fig. 6 finds larger betas worse.
    """
    return min(PAPER_BETA, 1.0 - 1.0 / longest_horizon(updates))


def warmup_beta(beta: float, t: int) -> float:
    """beta_t = min(beta, (1 + t) / (10 + t)) for the update numbered t (from 0): 0.1 at first, `beta`
    from t = (10 beta - 1) / (1 - beta) on (80 for 0.9). TensorFlow's ExponentialMovingAverage with
    `num_updates`; mean teacher warms its decay up the same way."""
    return min(beta, (1.0 + t) / (10.0 + t))


@dataclass
class EMASchedule:
    """The beta of each EMA update, and how many updates came before (t, restored on resume)."""

    beta: float
    warmup: bool = False
    updates: int = 0

    def next_beta(self) -> float:
        beta = warmup_beta(self.beta, self.updates) if self.warmup else self.beta
        self.updates += 1
        return beta


@torch.no_grad()
def relative_distance(aux: nn.Module, main: nn.Module) -> float:
    """||theta_S' - theta_S||_2 / ||theta_S||_2 over the parameters (`main` may be DDP-wrapped): how much
    of its own S' still carries (0 = S' is S)."""
    a_params = [p.detach().double() for p in aux.parameters()]
    m_params = [p.detach().double() for p in unwrap(main).parameters()]
    diff = sum(float((a - m).pow(2).sum()) for a, m in zip(a_params, m_params, strict=True))
    norm = sum(float(m.pow(2).sum()) for m in m_params)
    return math.sqrt(diff / norm) if norm > 0 else 0.0


@torch.no_grad()
def copy_weights(dst: nn.Module, src: nn.Module) -> None:
    """dst <- src (parameters and buffers); TF-KD self refreshes its snapshot with this.

    Buffers come from rank 0 (see module docstring), so the snapshot is identical on every rank.
    """
    src = unwrap(src)
    _sync_buffers_from_rank0(src)
    dst.load_state_dict(src.state_dict())


def checksum(model: nn.Module) -> float:
    """Sum of all parameters and floating buffers in float64: cheap cross-rank sync check."""
    total = 0.0
    for t in list(model.parameters()) + [b for b in model.buffers() if b.dtype.is_floating_point]:
        total += float(t.detach().double().sum())
    return total
