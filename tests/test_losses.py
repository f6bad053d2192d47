"""Loss values against hand computation (paper eqs. 1-5) and the variants' definitions."""

import math

import pytest
import torch

from edgekd import losses


def _softmax(row, tau):
    e = [math.exp(v / tau) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


ZS = [[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]]
ZA = [[1.0, 0.0, 0.0], [-2.0, 1.0, 1.5]]
Y = [0, 2]


def test_ce_matches_hand():
    want = sum(-math.log(_softmax(z, 1.0)[y]) for z, y in zip(ZS, Y)) / 2
    got = losses.ce_loss(torch.tensor(ZS), torch.tensor(Y))
    assert got.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("alpha,tau", [(0.6, 4.0), (0.6, 3.0), (0.3, 1.0), (1.0, 2.0)])
def test_skd_matches_eq5(alpha, tau):
    ce = sum(-math.log(_softmax(z, 1.0)[y]) for z, y in zip(ZS, Y)) / 2
    kl = sum(_kl(_softmax(a, tau), _softmax(s, tau)) for s, a in zip(ZS, ZA)) / 2  # batch mean
    want = alpha * ce + (1 - alpha) * tau**2 * kl
    loss, parts = losses.skd_loss(torch.tensor(ZS), torch.tensor(ZA), torch.tensor(Y), alpha, tau)
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert parts["ce"] == pytest.approx(ce, rel=1e-6)
    assert parts["kd"] == pytest.approx(kl, rel=1e-6)


def test_kl_zero_for_identical_and_bf16_logits_ok():
    z = torch.tensor(ZS)
    assert losses.kl_div(z, losses.soft_targets(z, 4.0), 4.0).item() == pytest.approx(0.0, abs=1e-7)
    loss, _ = losses.skd_loss(z.bfloat16(), torch.tensor(ZA).bfloat16(), torch.tensor(Y), 0.6, 4.0)
    assert loss.dtype == torch.float32


def test_no_gradient_reaches_aux_logits():
    zs = torch.tensor(ZS, requires_grad=True)
    za = torch.tensor(ZA, requires_grad=True)
    loss, _ = losses.skd_loss(zs, za, torch.tensor(Y), 0.6, 4.0)
    loss.backward()
    assert zs.grad is not None and zs.grad.abs().sum() > 0
    assert za.grad is None


def test_tfkd_reg_virtual_teacher_and_loss():
    tau, a, alpha = 2.0, 0.9, 0.6
    vt = losses.virtual_teacher(torch.tensor(Y), 3, a, tau)
    off = (1 - a) / 2
    want_rows = [_softmax([a if k == y else off for k in range(3)], tau) for y in Y]
    assert torch.allclose(vt, torch.tensor(want_rows), atol=1e-7)
    ce = sum(-math.log(_softmax(z, 1.0)[y]) for z, y in zip(ZS, Y)) / 2
    kl = sum(_kl(t, _softmax(s, tau)) for s, t in zip(ZS, want_rows)) / 2
    loss, _ = losses.tfkd_reg_loss(torch.tensor(ZS), torch.tensor(Y), alpha, tau, a)
    assert loss.item() == pytest.approx(alpha * ce + (1 - alpha) * tau**2 * kl, rel=1e-6)
