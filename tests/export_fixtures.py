"""Tiny, real run directories for tests, demos and the CPU benchmark.

Why: export/verify must be exercised on a model whose predictions are not degenerate, with
real manifests and images, but a 2-core CI box cannot train a real model. This writes a
handful of generated, class-dependent PNGs, trains a 2-block timm model for a few steps and
saves it exactly like the trainer does (safetensors + sidecar + data/*.json manifests).
Needs the `train` extra (torch, timm, safetensors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.models import save_student
from edgekd.export.batches import load_batch
from edgekd.shared.card import StudentCard

#: tiny architectures that export like their full-size versions
TINY_MODELS: dict[str, tuple[str, dict]] = {
    "vit": ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2}),
    "convnext": ("convnext_femto", {"depths": (1, 1, 2, 1), "ls_init_value": 1.0}),
    "efficientnet": ("tf_efficientnet_lite0", {}),
}


@dataclass
class TinyRunSpec:
    family: str = "vit"  # key of TINY_MODELS
    num_classes: int = 4
    image_size: int = 32
    train_per_class: int = 24
    test_per_class: int = 12
    train_steps: int = 40
    seed: int = 0
    extra_kwargs: dict = field(default_factory=dict)


def _class_image(label: int, num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Class = hue of a blob + stripe orientation, plus noise: learnable in a few steps."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    hue = np.array([np.cos(2 * np.pi * (label / num_classes + k / 3)) for k in range(3)], np.float32)
    freq = 3 + 2 * label
    stripes = np.sin(2 * np.pi * freq * (xx if label % 2 else yy) + rng.uniform(0, 6.28))
    cx, cy = rng.uniform(0.3, 0.7, 2)
    blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05)
    img = 0.5 + 0.25 * stripes[..., None] * 0.6 + 0.35 * blob[..., None] * hue[None, None, :]
    img += rng.normal(0, 0.08, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_manifest(path: Path, root: Path, classes: list[str], items: list[tuple[str, int]]) -> None:
    """Write a real `edgekd.data.Manifest` (paths stored relative to root, hashed)."""
    from edgekd.data import Manifest

    Manifest.from_items(root=str(root), classes=classes, items=items, layout="folder").save(path)


def make_image_folder(root: Path, spec: TinyRunSpec) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """Generate PNGs under root/{train,test}/CLASS/ and return (classes, train, test)."""
    from PIL import Image

    rng = np.random.default_rng(spec.seed)
    classes = [f"class_{i}" for i in range(spec.num_classes)]
    size = spec.image_size + 8  # not the model size: the resize in preprocessing is exercised
    out: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for split, per_class in (("train", spec.train_per_class), ("test", spec.test_per_class)):
        for label, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = _class_image(label, spec.num_classes, size, rng)
                p = d / f"{i:04d}.png"
                Image.fromarray(arr).save(p)
                out[split].append((str(p), label))
    return classes, out["train"], out["test"]


def build_tiny_run(run_dir: Path, spec: TinyRunSpec | None = None) -> Path:
    """Make RUN_DIR with model.safetensors + model.json + data/{train,test}.json, trained a little."""
    import timm
    import torch

    spec = spec or TinyRunSpec()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    classes, train, test = make_image_folder(run_dir / "images", spec)
    train_for_fit = train
    write_manifest(run_dir / "data" / "train.json", run_dir / "images", classes, train)
    write_manifest(run_dir / "data" / "test.json", run_dir / "images", classes, test)

    arch, kwargs = TINY_MODELS[spec.family]
    kwargs = {**kwargs, **spec.extra_kwargs}
    pp = {"input_size": [3, spec.image_size, spec.image_size], "mean": [0.5, 0.5, 0.5],
          "std": [0.25, 0.25, 0.25], "interpolation": "bicubic", "crop_pct": 1.0}
    x = load_batch([p for p, _ in train_for_fit], pp)
    y = np.array([l for _, l in train_for_fit])

    torch.manual_seed(spec.seed)
    model = timm.create_model(arch, pretrained=False, num_classes=spec.num_classes, **kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(spec.seed)
    model.train()
    for _ in range(spec.train_steps):
        idx = torch.randint(0, len(xt), (16,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    json_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    card = StudentCard(arch, spec.num_classes, classes, json_kwargs, pp, test_manifest="data/test.json")
    save_student(model, run_dir / "model.safetensors", card)
    return run_dir


def write_constant_manifest(run_dir: Path, n: int = 16, value: int = 128) -> Path:
    """A deliberately useless calibration set (flat grey images, the run's classes).

    INT8 ranges taken from it clip every real activation, so verify must fail: the test for
    "a threshold breach exits non-zero".
    """
    from PIL import Image

    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "model.json").read_text())
    d = run_dir / "constant_images"
    d.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        p = d / f"{i:03d}.png"
        Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(p)
        items.append((str(p), i % meta["num_classes"]))
    path = run_dir / "data" / "constant_calib.json"
    write_manifest(path, d, list(meta["classes"]), items)
    return path


def cached_tiny_run(base: Path, family: str, **spec_kw: object) -> Path:
    """build_tiny_run once per base folder (pytest's session basetemp), reused across test modules."""
    run = Path(base) / f"tiny_run_{family}"
    if not (run / "model.json").exists():
        build_tiny_run(run, TinyRunSpec(family=family, **spec_kw))  # type: ignore[arg-type]
    return run


def cached_export_all(base: Path, family: str) -> tuple[Path, Path, int]:
    """(run dir, export dir, exit code) of `edgekd export --target all` on the cached tiny run.

    Batch 10 over 48 test images makes the last verify batch partial (8). Cached on disk so
    several test modules share one export per session.
    """
    from edgekd.cli import main

    run = cached_tiny_run(base, family)
    out = run / "export_all"
    marker = out / "exit_code.txt"
    if not marker.exists():
        rc = main(["export", "--run", str(run), "--target", "all", "--out", str(out), "--bench-iters", "10",
                   "--batch-size", "10"])
        marker.write_text(str(rc))
    return run, out, int(marker.read_text())
