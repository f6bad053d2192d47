"""The trainer end to end on a tiny generated dataset (48 images of 32 px, 4 classes).

Tiny timm configs keep this fast on 2 cores: ViT-S (depth 4, patch 8, random init) teaches
ViT-T (depth 2); the 2-process test uses EfficientNet-Lite2 -> Lite0 (BatchNorm buffers).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgekd import train
from edgekd.config import load_config
from edgekd.errors import EdgeKDError
from edgekd.losses import ClassPairDataset
from edgekd.methods import get_method

REPO = Path(__file__).resolve().parents[1]
TINY_VIT = [
    "data.test_size=0.25", "data.fraction=1.0",
    "model.teacher=vit_small_patch16_224", "model.teacher_pretrained=false",
    "model.teacher_kwargs={img_size: 32, patch_size: 8, depth: 4}",
    "model.student=vit_tiny_patch16_224", "model.student_kwargs={img_size: 32, patch_size: 8, depth: 2}",
    "model.image_size=32", "optim.epochs=1", "optim.batch_size=8", "optim.warmup_epochs=0", "optim.lr=1e-3",
    "trackers=none", "progress=false", "val_limit=null", "method.kd_teacher_epochs=1",
]
TINY_LITE = [
    "data.test_size=0.25", "data.fraction=1.0",
    "model.teacher=tf_efficientnet_lite2", "model.teacher_pretrained=false", "model.teacher_weights=null",
    "model.student=tf_efficientnet_lite0", "model.image_size=32", "optim.epochs=1", "optim.batch_size=6",
    "optim.warmup_epochs=0", "trackers=none", "progress=false", "val_limit=null",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """4 class folders x 12 PNGs; each class brightens one colour channel so it is learnable."""
    root = tmp_path_factory.mktemp("tiny") / "ds"
    rng = np.random.default_rng(0)
    for k, name in enumerate(["alpha", "beta", "gamma", "delta"]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            arr = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            arr[:, :, k % 3] += 120 + 60 * (k // 3)
            Image.fromarray(arr).save(root / name / f"{name}_{i}.png")
    return root


def run(tiny: Path, run_dir: Path, *extra: str, base=TINY_VIT) -> dict:
    assert train.main([*base, f"data.root={tiny}", f"run_dir={run_dir}", *extra]) == 0
    return json.loads((run_dir / "results.json").read_text())


def cli_run(capsys, *argv: str) -> tuple[int, list[str], str]:
    """`edgekd ARGV` in this process, so the exit code is the CLI's; returns it, the `edgekd VERB: ...` lines
    on stderr (a user error or a failed check is one such line, never a traceback) and stdout."""
    from edgekd import cli

    capsys.readouterr()
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return rc, [line for line in err.splitlines() if line.startswith(f"edgekd {argv[0]}")], out


def cli_train(capsys, tiny: Path, run_dir: Path, *extra: str) -> tuple[int, list[str], str]:
    return cli_run(capsys, "train", *TINY_VIT, f"data.root={tiny}", f"run_dir={run_dir}", *extra)


def test_ours_writes_the_run_directory(tiny, tmp_path):
    res = run(tiny, tmp_path / "r", "optim.epochs=2", "data.fraction=0.5", "val_limit=2", "trackers=tensorboard")
    d = tmp_path / "r"
    for name in ["config.yaml", "data/train.json", "data/test.json", "metrics.csv", "model.safetensors",
                 "model.json", "best.safetensors", "best.json", "results.json", "confusion_matrix.png", "MODEL_CARD.md"]:
        assert (d / name).is_file(), name
    assert sorted(p.name for p in (d / "checkpoints").iterdir()) == ["epoch_0001", "epoch_0002"]
    assert len((d / "metrics.csv").read_text().strip().splitlines()) == 3
    meta = json.loads((d / "model.json").read_text())
    assert meta["architecture"] == "vit_tiny_patch16_224" and meta["num_classes"] == 4
    assert meta["preprocess"]["input_size"] == [3, 32, 32] and meta["weights_sha256"]
    assert res["world_size"] == 1 and 0.0 <= res["accuracy"] <= 1.0 and res["n_test"] == 12
    assert set(res["test"]["per_class"]) == {"alpha", "beta", "gamma", "delta"}
    assert any((d / "logs").rglob("events.out.tfevents*"))
    from edgekd.evaluation import evaluate_run

    assert evaluate_run(d)["accuracy"] == res["accuracy"]


@pytest.mark.parametrize("method,extra", [
    ("ours-swap", []), ("ours-cskd", []), ("ours-cskd", ["method.cskd_teacher=self"]),
    ("ours-tfkd", []), ("ours-tfkd", ["method.tfkd_mode=reg"]), ("ours-tfkd", ["method.tfkd_mode=self"]),
    ("cm1", []), ("cm2", []), ("cm3", []), ("cm4", []), ("kd", []),
])
def test_each_method_runs_one_epoch(tiny, tmp_path, method, extra):
    res = run(tiny, tmp_path / "r", f"method={method}", *extra)
    assert res["method"] == method and res["steps"] == 4 and res["epochs"] == 1
    assert 0.0 <= res["accuracy"] <= 1.0 and np.isfinite(res["test"]["macro_f1"])


def test_bf16_runs_in_its_own_process(tiny, tmp_path):
    """Accelerate fixes the mixed precision once per process: bf16 trains in a fresh one, and asking
    a process that already trained in fp32 for bf16 is a user error naming the fix."""
    method, args = "ours", [*TINY_VIT, f"data.root={tiny}", f"run_dir={tmp_path / 'r'}", "mixed_precision=bf16"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "edgekd.train", *args, f"method={method}"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["method"] == method and res["steps"] == 4 and res["epochs"] == 1
    assert 0.0 <= res["accuracy"] <= 1.0 and np.isfinite(res["test"]["macro_f1"])
    assert res["mixed_precision"] == "bf16"
    train.make_accelerator(load_config(None, ["trackers=none"]), tmp_path / "fp32")  # this process: fp32
    with pytest.raises(EdgeKDError, match="already trained with no .*own process"):
        train.main([*args, f"run_dir={tmp_path / 'again'}"])


def test_pretrained_reference_uses_offline_lite0_weights(tiny, tmp_path):
    res = run(tiny, tmp_path / "r", "method=pretrained", "model.teacher_weights=lite-package", base=TINY_LITE)
    assert res["method"] == "pretrained" and res["num_params"] > 3_000_000


def _students(tiny, method):
    cfg = load_config(None, [*TINY_VIT, f"data.root={tiny}", f"method={method}"])
    torch.manual_seed(0)
    return get_method(method)(cfg).build(4)


def test_swap_exchanges_the_selected_subsets(tiny):
    ours, swap = _students(tiny, "ours"), _students(tiny, "ours-swap")
    head = {"head.weight", "head.bias"}
    s, a = ours.student.state_dict(), ours.aux.state_dict()
    s2, a2 = swap.student.state_dict(), swap.aux.state_dict()
    for k in s:
        if k in head:
            continue
        assert torch.equal(s2[k], a[k]) and torch.equal(a2[k], s[k]), k
    assert any(not torch.equal(s[k], a[k]) for k in s if k not in head)  # the subsets differ


def test_aux_is_frozen_and_in_eval_mode(tiny):
    b = _students(tiny, "ours")
    assert all(not p.requires_grad for p in b.aux.parameters()) and not b.aux.training
    assert all(p.requires_grad for p in b.student.parameters())


def test_cskd_partners_are_same_class_and_reproducible():
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]

    class Base:
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return torch.tensor([float(i)]), labels[i]

    ds = ClassPairDataset(Base(), labels, seed=3)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(labels)):
            j = ds.partner(i)
            assert labels[j] == labels[i]
            assert j != i or labels.count(labels[i]) == 1
            x, y, xp = ds[i]
            assert y == labels[i] and int(xp.item()) == j
    ds.set_epoch(1)
    first = [ds.partner(i) for i in range(len(labels))]
    ds.set_epoch(1)
    assert first == [ds.partner(i) for i in range(len(labels))]
    seen = set()
    for e in range(20):  # every same-class partner shows up eventually
        ds.set_epoch(e)
        seen.add(ds.partner(5))
    assert seen == {6, 7, 8}


def test_resume_reaches_the_same_weights(tiny, tmp_path):
    from safetensors.torch import load_file

    common = ["optim.epochs=2", "data.fraction=0.5", "val_limit=2", "optim.warmup_epochs=0.5"]
    run(tiny, tmp_path / "a", *common)
    assert train.main([*TINY_VIT, f"data.root={tiny}", f"run_dir={tmp_path / 'b'}", *common, "stop_after=1"]) == 0
    assert not (tmp_path / "b" / "model.safetensors").exists()  # "killed" after epoch 1
    res = run(tiny, tmp_path / "b", *common, "resume=true")
    assert res["resumed_from"].endswith("epoch_0001")
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    ca = load_file(tmp_path / "a" / "checkpoints" / "epoch_0002" / "aux.safetensors")
    cb = load_file(tmp_path / "b" / "checkpoints" / "epoch_0002" / "aux.safetensors")
    assert ca.keys() == cb.keys() and ca
    for k in ca:  # S' too
        torch.testing.assert_close(ca[k], cb[k], rtol=0, atol=1e-6)
    assert (tmp_path / "a" / "metrics.csv").read_text().count("\n") == (tmp_path / "b" / "metrics.csv").read_text().count("\n")


@pytest.mark.slow
def test_two_process_gloo_run(tiny, tmp_path):
    """Real 2-process DDP on CPU (`--cpu --num_processes 2` would silently run ONE process)."""
    env = dict(os.environ, ACCELERATE_USE_CPU="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    accel = Path(sys.executable).parent / "accelerate"
    cmd = [str(accel), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "edgekd" / "train.py"),
           *TINY_LITE, f"data.root={tiny}", f"run_dir={tmp_path / 'ddp'}", "optim.epochs=2"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert res["world_size"] == 2 and "MULTI_CPU" in res["distributed_type"]
    assert len(res["aux_checksums"]) == 2 and res["aux_checksums"][0] == res["aux_checksums"][1]  # S' in sync
    assert res["student_checksums"][0] == res["student_checksums"][1]
    from edgekd.evaluation import evaluate_run

    one = evaluate_run(tmp_path / "ddp")
    assert one["n"] == res["n_test"] == 12
    assert one["accuracy"] == res["accuracy"] and one["confusion_matrix"] == res["test"]["confusion_matrix"]
