"""The method itself: the loop applies the EMA, the KD term is live, S' normalizes correctly under
BatchNorm, the ramp-up weights the KD term, the baselines' inits follow their formulas.

Each test names what would break it; tiny timm configs keep them fast on 2 cores.
"""

import csv
import json
import math
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from edgekd import losses, train
from edgekd.config import OptimConfig, load_config, rampup_steps
from edgekd.ema import batch_statistics, has_batchnorm
from edgekd.errors import EdgeKDError
from edgekd.methods import Networks, get_method
from edgekd.models import create_student
from edgekd.optim import build_optimizer, rampup_weight
from edgekd.rundir import RunDir
from tests.test_train_e2e import TINY_LITE, TINY_VIT, tiny  # noqa: F401  (module fixture)

# 36 training images, one batch of 36: one optimizer step per epoch; no dropout so S(x) in train
# mode equals S'(x) with batch statistics when S' = S
ONE_STEP_LITE = [*TINY_LITE, "optim.batch_size=36", "model.student_kwargs={drop_rate: 0.0}"]


def _run(tiny: Path, run_dir: Path, *extra: str, base=ONE_STEP_LITE) -> dict:
    assert train.main([*base, f"data.root={tiny}", f"run_dir={run_dir}", *extra]) == 0
    return json.loads((run_dir / "results.json").read_text())


def _kd_per_epoch(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(r["train_kd"]) for r in csv.DictReader(f)]


def test_loop_applies_the_ema_after_every_step(tiny, tmp_path):
    """beta=1 keeps S' at its selected init; beta=0.9 must give 0.9 * S'_0 + 0.1 * S_1 after one step."""
    _run(tiny, tmp_path / "still", "method.beta=1.0")
    res = _run(tiny, tmp_path / "ema", "method.beta=0.9")
    assert res["steps"] == 1 and res["aux_bn"] == "batch"
    aux0, aux1 = load_file(tmp_path / "still" / "aux.safetensors"), load_file(tmp_path / "ema" / "aux.safetensors")
    s1, s1_again = load_file(tmp_path / "ema" / "model.safetensors"), load_file(tmp_path / "still" / "model.safetensors")
    moved = 0
    for k, a1 in aux1.items():
        torch.testing.assert_close(s1[k], s1_again[k], rtol=0, atol=0)  # same first step in both runs
        if a1.dtype.is_floating_point:
            torch.testing.assert_close(a1, 0.9 * aux0[k] + 0.1 * s1[k], rtol=1e-5, atol=1e-6)
            moved += int(not torch.equal(a1, aux0[k]))
    assert moved > 100  # S' really moved (nearly every tensor)


def test_kd_term_is_live_for_ours_and_absent_for_cm1(tiny, tmp_path, capsys):
    _run(tiny, tmp_path / "ours")
    assert "short for EMA self-distillation" in capsys.readouterr().out  # 1 step: the user is told
    _run(tiny, tmp_path / "cm1", "method=cm1")
    assert "short for EMA" not in capsys.readouterr().out
    assert all(kd > 1e-4 for kd in _kd_per_epoch(tmp_path / "ours"))
    assert _kd_per_epoch(tmp_path / "cm1") == [0.0]


def test_batch_statistics_aux_equal_to_s_gives_zero_kd(tiny, tmp_path):
    """beta 0 makes S' = S after step 1, so at step 2 the KD term vanishes, unless S' normalizes
    with its running statistics (the bug of issue 8), which leaves it clearly above 0."""
    common = ["method.beta=0.0", "optim.epochs=2"]
    _run(tiny, tmp_path / "batch", *common, "method.aux_bn=batch")
    _run(tiny, tmp_path / "running", *common, "method.aux_bn=running")
    kd_batch, kd_running = _kd_per_epoch(tmp_path / "batch")[1], _kd_per_epoch(tmp_path / "running")[1]
    assert kd_batch < 1e-6
    assert kd_running > 1e-3


def test_aux_bn_changes_nothing_without_batchnorm(tiny, tmp_path):
    """ViT (and ConvNeXt) have no BatchNorm: auto resolves to running and batch gives identical weights."""
    a = _run(tiny, tmp_path / "auto", base=TINY_VIT)
    _run(tiny, tmp_path / "batch", "method.aux_bn=batch", base=TINY_VIT)
    assert a["aux_bn"] == "running"
    wa, wb = load_file(tmp_path / "auto" / "model.safetensors"), load_file(tmp_path / "batch" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    cnx = create_student("convnext_femto", 3, dims=(8, 16, 32, 64), depths=(1, 1, 1, 1)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = cnx(x)
        with batch_statistics(cnx):
            assert torch.equal(cnx(x), plain)
    assert not has_batchnorm(cnx)


def test_batch_statistics_uses_the_batch_and_keeps_buffers():
    bn = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Dropout(0.5)).eval()
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(8, 3, 4, 4) * 3 + 2
    with torch.no_grad(), batch_statistics(bn):
        y = bn(x)
        assert not bn[2].training  # dropout stays off
    per_channel = y.transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(4), atol=1e-5, rtol=0)  # batch-normalized
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())  # running stats untouched
    assert not bn[1].training and bn[1].track_running_stats  # restored


def test_rampup_weights_the_kd_term():
    assert rampup_weight(0, 10) == pytest.approx(math.exp(-5))
    assert rampup_weight(5, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert rampup_weight(5, 10, "linear") == pytest.approx(0.5)
    assert rampup_weight(10, 10) == rampup_weight(3, 0) == 1.0
    zs, za, y = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([0])
    full, parts = losses.skd_loss(zs, za, y, 0.6, 4.0)
    half, _ = losses.skd_loss(zs, za, y, 0.6, 4.0, kd_weight=0.5)
    assert half.item() == pytest.approx(0.6 * parts["ce"] + 0.5 * 0.4 * 16 * parts["kd"], rel=1e-6)
    assert full.item() > half.item()
    assert rampup_steps("0", 10, 7) == 0 and rampup_steps("2", 10, 7) == 14 and rampup_steps("10%", 10, 7) == 7
    with pytest.raises(EdgeKDError, match="kd_rampup"):
        load_config("lite2_to_lite0_fmnist", ["method.kd_rampup=soon"])


def test_rampup_reaches_the_loop(tiny, tmp_path):
    """The step-0 KD weight is exp(-5) with a ramp: the loss of epoch 1 is nearly plain alpha * CE."""
    res = _run(tiny, tmp_path / "r", "method.kd_rampup=10", "optim.epochs=1")
    assert res["kd_rampup_steps"] == 10
    with open(tmp_path / "r" / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    loss, ce, kd = float(row["train_loss"]), float(row["train_ce"]), float(row["train_kd"])
    assert loss == pytest.approx(0.6 * ce + math.exp(-5) * 0.4 * 16 * kd, rel=1e-4)


def test_cskd_partner_is_s_itself_by_default(tiny):
    cfg = load_config(None, [*TINY_VIT, f"data.root={tiny}", "method=ours-cskd"])
    method = get_method("ours-cskd")(cfg)
    built = method.build(4)
    assert built.aux is None  # published CS-KD: no second network
    seen = []
    student = lambda x: seen.append(x) or torch.zeros(len(x), 4)  # noqa: E731
    acc = types.SimpleNamespace(autocast=torch.no_grad)
    x, partner = torch.zeros(2, 3, 32, 32), torch.ones(2, 3, 32, 32)
    method.targets(Networks(student), (x, torch.tensor([0, 1]), partner), acc)
    assert len(seen) == 1 and torch.equal(seen[0], partner)
    cfg_aux = load_config(None, [*TINY_VIT, f"data.root={tiny}", "method=ours-cskd", "method.cskd_teacher=aux"])
    assert get_method("ours-cskd")(cfg_aux).build(4).aux is not None


def test_tfkd_self_is_two_stage(tiny, tmp_path):
    """Published Tf-KD_self: the student architecture is trained first, then distilled into S."""
    res = _run(tiny, tmp_path / "r", "method=ours-tfkd", "method.tfkd_mode=self", "method.tfkd_teacher_epochs=1",
               base=TINY_VIT)
    meta = json.loads((tmp_path / "r" / "teacher.json").read_text())
    assert meta["architecture"] == "vit_tiny_patch16_224" and meta["role"] == "teacher"
    assert _kd_per_epoch(tmp_path / "r")[0] > 0 and res["steps"] == 4
    assert load_config(None, ["method=ours-tfkd"]).method.tfkd_mode == "snapshot"
    assert load_config(None, []).method.tfkd_correct_prob == 0.99


@pytest.mark.parametrize("init,fan", [("xavier", "avg"), ("kaiming", "in")])
def test_cm3_cm4_follow_their_init_formulas(init, fan):
    """Xavier: std sqrt(2 / (fan_in + fan_out)), uniform; Kaiming (ReLU, fan_in for Linear): sqrt(2 / fan_in)."""
    m = create_student("vit_tiny_patch16_224", 4, init=init, img_size=32, patch_size=8, depth=2)
    w = m.blocks[0].mlp.fc1.weight  # Linear 192 -> 768
    fan_out, fan_in = w.shape
    want = math.sqrt(2.0 / (fan_in + fan_out)) if fan == "avg" else math.sqrt(2.0 / fan_in)
    assert w.std().item() == pytest.approx(want, rel=0.03)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    if init == "xavier":
        assert w.abs().max().item() <= bound
    else:
        assert w.abs().max().item() > bound * 1.5  # normal tails, not a uniform box


def test_cache_and_augmentation_reach_training(tiny, tmp_path):
    _run(tiny, tmp_path / "r", f"data.cache_dir={tmp_path / 'cache'}", "aug.rotation=0", "aug.hflip=0.5",
         base=TINY_VIT)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # train and test decoded once
    cfg = load_config(None, [*TINY_VIT, f"data.root={tiny}", f"run_dir={tmp_path / 'r2'}", "aug.hflip=0.5",
                             f"data.cache_dir={tmp_path / 'cache'}"])
    from accelerate import Accelerator

    data = train.build_data(cfg, RunDir(tmp_path / "r2"), Accelerator(cpu=True))
    assert data.train.cache is not None and data.test.cache is not None
    names = [type(t).__name__ for t in data.train.transform.transforms]
    assert "RandomHorizontalFlip" in names


def test_the_optimizer_is_adamws_fused_kernel_and_steps_like_the_per_tensor_loop():
    """Where torch has the fused kernel (CPU/CUDA floats) the trainer builds it; it is the same AdamW."""
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    fused = build_optimizer(nets[0], OptimConfig())
    assert fused.defaults["fused"] is True
    o = OptimConfig()
    groups = [{"params": [p for p in nets[1].parameters() if p.ndim > 1], "weight_decay": o.weight_decay},
              {"params": [p for p in nets[1].parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    loop = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), foreach=False)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    for net, opt in zip(nets, (fused, loop)):
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
