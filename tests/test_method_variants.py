"""Issue 19's variants of the EMA self-distillation, each a `method.*` option that changes what it
says and nothing else: S' on another augmented view, one EMA update per epoch, a warming-up beta,
beta=auto for short runs, and the logged distance of S' from S. The paper presets keep the paper's EMA.
"""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edgekd import train
from edgekd.config import MethodConfig, load_config, save_config
from edgekd.data import discover
from edgekd.data.torchdata import ImageDataset, TwoViews, train_transform
from edgekd.ema import auto_beta, warmup_beta
from edgekd.errors import EdgeKDError
from edgekd.methods.ours import Ours
from edgekd.models import create_student, resolve_preprocess
from tests.test_method import ONE_STEP_LITE
from tests.test_train_e2e import TINY_VIT, tiny  # noqa: F401  (module fixture)

VIT_KWARGS = {"img_size": 32, "patch_size": 8, "depth": 2}


def _run(tiny: Path, run_dir: Path, *extra: str, base=TINY_VIT) -> dict:
    assert train.main([*base, f"data.root={tiny}", f"run_dir={run_dir}", *extra]) == 0
    return json.loads((run_dir / "results.json").read_text())


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _assert_ema_of(run_dir: Path, aux0: dict, beta: float) -> None:
    """S' at the end of `run_dir` is exactly one EMA update beta * S'_0 + (1 - beta) * S_final."""
    aux, s = load_file(run_dir / "aux.safetensors"), load_file(run_dir / "model.safetensors")
    for k, a in aux.items():
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, beta * aux0[k] + (1 - beta) * s[k], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def still(tiny, tmp_path_factory) -> Path:
    """beta = 1: S' stays at its selected init (4 steps of TINY_VIT)."""
    run_dir = tmp_path_factory.mktemp("still") / "r"
    _run(tiny, run_dir, "method.beta=1.0")
    return run_dir


@pytest.mark.parametrize("preset", ["vit_s_to_t", "convnext_t_to_f"])
def test_paper_presets_keep_the_papers_ema(preset):
    m = load_config(preset).method
    assert (m.beta, m.ema_every, m.beta_warmup, m.aux_view) == (0.9, "step", False, "same")
    d = MethodConfig()
    assert (d.beta, d.ema_every, d.beta_warmup, d.aux_view) == (0.9, "step", False, "same")


def test_config_reads_the_variants(tmp_path):
    cfg = load_config("vit_s_to_t", ["method.beta=auto", "method.ema_every=epoch", "method.beta_warmup=true",
                                     "method.aux_view=augmented"])
    m = cfg.method
    assert (m.beta, m.ema_every, m.beta_warmup, m.aux_view) == ("auto", "epoch", True, "augmented")
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert load_config(None, ["method.beta=0.999"]).method.beta == 0.999
    for bad, msg in [("method.beta=fast", "method.beta='fast'; fix"), ("method.beta=1.5", "method.beta=1.5"),
                     ("method.ema_every=batch", "ema_every"), ("method.aux_view=mixed", "aux_view")]:
        with pytest.raises(EdgeKDError, match=msg):
            load_config(None, [bad])


def test_auto_beta_is_a_bounded_share_of_the_run():
    assert auto_beta(24) == pytest.approx(1 - 1 / 2.4)  # the short-budget fixture: horizon 2.4 steps
    assert auto_beta(20) == pytest.approx(0.5) and auto_beta(10) == auto_beta(3) == 0.0
    assert auto_beta(100) == pytest.approx(0.9) and auto_beta(90_000) == 0.9  # never above the paper's beta
    for n in (12, 50, 99):
        assert 1 / (1 - auto_beta(n)) == pytest.approx(0.1 * n)


def test_beta_auto_resolves_in_the_run(tiny, tmp_path, capsys):
    """20 steps: beta 0.5, recorded in results.json, and no short-budget warning (the same 10 % rule)."""
    res = _run(tiny, tmp_path / "auto", "method.beta=auto", "optim.epochs=5")
    assert res["steps"] == 20 and res["ema_beta"] == 0.5 and res["ema_updates"] == 20
    assert "short for EMA" not in capsys.readouterr().out
    assert _run(tiny, tmp_path / "fixed", "method.beta=0.9")["ema_beta"] == 0.9
    assert "short for EMA" in capsys.readouterr().out
    _run(tiny, tmp_path / "one", "method.beta=auto", base=ONE_STEP_LITE)  # 1 step: beta 0, S' becomes S
    aux, s = load_file(tmp_path / "one" / "aux.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    assert all(torch.equal(aux[k], s[k]) for k in aux if aux[k].dtype.is_floating_point)


def test_ema_every_epoch_updates_once_at_the_epoch_end(tiny, tmp_path, still):
    """4 steps in the epoch, yet S' = 0.9 S'_0 + 0.1 S_final: untouched during the epoch, one update at its end."""
    res = _run(tiny, tmp_path / "epoch", "method.ema_every=epoch")
    assert res["steps"] == 4 and res["ema_updates"] == 1
    _assert_ema_of(tmp_path / "epoch", load_file(still / "aux.safetensors"), 0.9)


def test_beta_warmup_starts_at_one_tenth(tiny, tmp_path):
    assert [warmup_beta(0.9, t) for t in (0, 1, 2)] == pytest.approx([0.1, 2 / 11, 3 / 12])
    assert warmup_beta(0.9, 79) < 0.9 and warmup_beta(0.9, 80) == 0.9 and warmup_beta(0.9, 10**6) == 0.9
    _run(tiny, tmp_path / "still", "method.beta=1.0", base=ONE_STEP_LITE)
    _run(tiny, tmp_path / "warm", "method.beta_warmup=true", base=ONE_STEP_LITE)  # one step: beta_0
    _assert_ema_of(tmp_path / "warm", load_file(tmp_path / "still" / "aux.safetensors"), 0.1)


@pytest.mark.parametrize("variant", [
    ["method.beta_warmup=true"],
    ["method.beta_warmup=true", "method.ema_every=epoch", "method.aux_view=augmented"],
])
def test_a_resumed_run_continues_the_ema_schedule(tiny, tmp_path, variant):
    """The warm-up counter and the second views pick up where the killed run stopped: same S' and S."""
    common = ["optim.epochs=2", *variant]
    _run(tiny, tmp_path / "a", *common)
    assert train.main([*TINY_VIT, f"data.root={tiny}", f"run_dir={tmp_path / 'b'}", *common, "stop_after=1"]) == 0
    res = _run(tiny, tmp_path / "b", *common, "resume=true")
    assert res["resumed_from"].endswith("epoch_0001") and res["ema_updates"] == (8 if len(variant) == 1 else 2)
    for stem in ("aux", "model"):
        a, b = load_file(tmp_path / "a" / f"{stem}.safetensors"), load_file(tmp_path / "b" / f"{stem}.safetensors")
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_two_views_are_independent_draws_of_the_same_image(tiny):
    pre = resolve_preprocess("vit_tiny_patch16_224", image_size=32, **VIT_KWARGS)
    ds = ImageDataset(discover(str(tiny)), None, train_transform(pre))
    views = TwoViews(ds, seed=0)
    torch.manual_seed(5)
    x, y = ds[3]
    after_plain = torch.get_rng_state()
    torch.manual_seed(5)
    x1, y1, x2 = views[3]
    assert torch.equal(x1, x) and y1 == y  # view 1 is today's sample
    assert torch.equal(torch.get_rng_state(), after_plain)  # view 2 draws nothing from the global stream
    assert x2.shape == x1.shape and not torch.equal(x2, x1)
    assert torch.equal(views[3][2], x2)  # reproducible within an epoch...
    views.set_epoch(1)
    assert not torch.equal(views[3][2], x2)  # ...and new every epoch


def test_aux_view_augmented_gives_s_prime_another_tensor(tiny, tmp_path, monkeypatch):
    """Forward hooks on S and S': with `augmented` S' sees other tensors than S in every step, S the same
    tensors as with `same` (where S' sees S's own)."""
    seen: dict[str, list[torch.Tensor]] = {}
    build = Ours.build

    def build_with_hooks(self, num_classes):
        nets = build(self, num_classes)
        for name, net in (("s", nets.student), ("aux", nets.aux)):
            net.register_forward_pre_hook(
                lambda m, args, name=name: seen[name].append(args[0].clone()) if name == "aux" or m.training else None)
        return nets

    monkeypatch.setattr(Ours, "build", build_with_hooks)
    inputs = {}
    for view in ("same", "augmented"):
        seen.update(s=[], aux=[])
        _run(tiny, tmp_path / view, f"method.aux_view={view}")
        inputs[view] = dict(seen)
    same, aug = inputs["same"], inputs["augmented"]
    assert len(same["s"]) == len(same["aux"]) == len(aug["s"]) == len(aug["aux"]) == 4
    assert all(torch.equal(s, a) for s, a in zip(same["s"], same["aux"]))
    assert all(s.shape == a.shape and not torch.equal(s, a) for s, a in zip(aug["s"], aug["aux"]))
    assert all(torch.equal(a, b) for a, b in zip(same["s"], aug["s"]))  # S's inputs unchanged


def test_aux_distance_is_logged(tiny, tmp_path, still):
    """beta 0: S' is S after every step (distance 0); beta 1: the logged value is ||S'_0 - S|| / ||S||
    from the saved networks; cm1 (no S') leaves the column empty."""
    _run(tiny, tmp_path / "b0", "method.beta=0.0")
    assert [float(r["aux_distance"]) for r in _metrics(tmp_path / "b0")] == [0.0]
    names = {n for n, _ in create_student("vit_tiny_patch16_224", 4, **VIT_KWARGS).named_parameters()}
    aux, s = load_file(still / "aux.safetensors"), load_file(still / "model.safetensors")
    want = math.sqrt(sum(float((aux[k].double() - s[k].double()).pow(2).sum()) for k in names)
                     / sum(float(s[k].double().pow(2).sum()) for k in names))
    logged = float(_metrics(still)[-1]["aux_distance"])
    assert logged == pytest.approx(want, rel=1e-6) and logged > 0.1
    _run(tiny, tmp_path / "cm1", "method=cm1")
    assert [r["aux_distance"] for r in _metrics(tmp_path / "cm1")] == [""]
