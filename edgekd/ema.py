"""EMA of the main student S into the auxiliary student S' (paper eq. 7), buffers included.

`theta_S' <- beta * theta_S' + (1 - beta) * theta_S` after every optimizer step. Floating
buffers (BatchNorm running mean/var) follow the same rule; integer buffers
(`num_batches_tracked`) are copied. S' never trains: its parameters have
`requires_grad=False` and it is not wrapped by DDP.

Identical on every rank: DDP keeps S's parameters identical across ranks, but BatchNorm
buffers are updated locally by each rank's forward and only re-broadcast from rank 0 at the
next forward. `ema_update` therefore broadcasts S's floating buffers from rank 0 first (what DDP
would do anyway), so every rank applies the same update to S'.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
