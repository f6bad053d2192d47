"""EMA of S into S' (eq. 7): parameters and buffers, DDP unwrap, frozen S'."""

import copy

import torch
from torch import nn

from edgekd.ema import checksum, ema_update, freeze, unwrap


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_ema_math_params_and_buffers():
    s = _net()
    aux = freeze(copy.deepcopy(s))
    with torch.no_grad():
        for p in s.parameters():
            p.add_(torch.randn_like(p))
    s.train()
    s(torch.randn(5, 3, 8, 8))  # moves BN running stats and num_batches_tracked
    before = {k: v.clone() for k, v in aux.state_dict().items()}
    beta = 0.9
    ema_update(aux, s, beta)
    after, main = aux.state_dict(), s.state_dict()
    for k, v in before.items():
        if v.dtype.is_floating_point:
            want = beta * v + (1 - beta) * main[k]
            assert torch.allclose(after[k], want, atol=1e-6), k
        else:  # num_batches_tracked: copied
            assert torch.equal(after[k], main[k]), k
    assert "1.running_mean" in before and not torch.equal(before["1.running_mean"], after["1.running_mean"])


def test_ema_beta_edge_cases_and_wrapped_main():
    s = _net()
    aux = freeze(copy.deepcopy(s))
    with torch.no_grad():
        for p in s.parameters():
            p.mul_(3)

    class Wrapper(nn.Module):  # stands in for DDP: `.module` holds the model
        def __init__(self, m):
            super().__init__()
            self.module = m

    w = Wrapper(s)
    assert unwrap(w) is s
    keep = copy.deepcopy(aux.state_dict())
    ema_update(aux, w, 1.0)
    assert all(torch.equal(keep[k], v) for k, v in aux.state_dict().items() if v.dtype.is_floating_point)
    ema_update(aux, w, 0.0)
    assert checksum(aux) == checksum(s)


def test_aux_never_gets_gradients():
    s = _net()
    aux = freeze(copy.deepcopy(s))
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        t = aux(x)
    out = s.train()(x)
    (out.sum() + 0 * t.sum()).backward()
    assert all(p.grad is None and not p.requires_grad for p in aux.parameters())
    assert not aux.training
