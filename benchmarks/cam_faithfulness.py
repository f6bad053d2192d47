"""Faithfulness of each saliency method: deletion / insertion AUC on a sample of the test split.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cam_faithfulness.py --run RUN [--n 30]

Main student S of a run, `--n` test images (classes in turn), each map explaining S's own
top-1 class. Deletion AUC: lower = the map found what S needs; insertion AUC: higher = the map
found what S needs. `randomcam` (a CAM with random channel weights: same smoothness as the
real maps, no information) is the floor a method must beat;
`occlusion` is the torch-free method `edgekd explain --artifact` and the verify drift use,
scored here through the PyTorch model so all methods see the same network.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgekd.explain.cam import CamConfig, compute_cams
from edgekd.shared.explain_args import sample_manifest
from edgekd.explain.faithfulness import FaithfulnessConfig, curves
from edgekd.shared.saliency import occlusion_maps
from edgekd.export.source import TorchRunner
from edgekd.shared.preprocess import PreprocessConfig, preprocess_numpy
from edgekd.data import load_image

CAMS = ("gradcam", "gradcam++", "scorecam", "layercam", "eigencam", "randomcam")


def method_maps(name: str, runner: TorchRunner, x: np.ndarray, targets: np.ndarray, layer: str | None) -> np.ndarray:
    """(B, H, W) maps of one method for the given targets."""
    if name == "occlusion":
        return occlusion_maps(runner.predict, x, targets)[0]
    np.random.seed(0)  # randomcam draws its channel weights from numpy's global generator
    return compute_cams(runner.model, torch.from_numpy(x), CamConfig(name, layer), [int(t) for t in targets]).maps


def measure(runner: TorchRunner, x: np.ndarray, methods: list[str], layer: str | None) -> list[dict]:
    targets = runner.predict(x).argmax(1)
    cfg, rows = FaithfulnessConfig(), []
    for name in methods:
        t0 = time.perf_counter()
        maps = method_maps(name, runner, x, targets, layer)
        seconds = (time.perf_counter() - t0) / len(x)
        c = [curves(runner.predict, xi, m, int(t), cfg) for xi, m, t in zip(x, maps, targets)]
        dele, ins = np.array([v.deletion_auc for v in c]), np.array([v.insertion_auc for v in c])
        rows.append({"method": name, "deletion_auc": float(dele.mean()), "deletion_std": float(dele.std()),
                     "insertion_auc": float(ins.mean()), "insertion_std": float(ins.std()),
                     "score": float(ins.mean() - dele.mean()), "seconds_per_image": seconds})
        print(f"{name:10s} deletion {dele.mean():.3f} insertion {ins.mean():.3f} ({seconds:.2f} s/image)", flush=True)
    return rows


def conclusions(rows: list[dict]) -> list[str]:
    """Plain-language reading of the numbers (written from them, never by hand)."""
    rnd = next(r for r in rows if r["method"] == "randomcam")
    ranked = sorted((r for r in rows if r["method"] != "randomcam"), key=lambda r: -r["score"])
    best = ranked[0]
    lines = [f"- Most faithful here: **{best['method']}** (insertion - deletion = {best['score']:.3f}; "
             f"randomcam: {rnd['score']:.3f})."]
    for r in ranked:
        beats = r["deletion_auc"] < rnd["deletion_auc"] and r["insertion_auc"] > rnd["insertion_auc"]
        lines.append(f"- {r['method']}: {'beats' if beats else 'does NOT beat'} randomcam on both curves "
                     f"(deletion {r['deletion_auc']:.3f} vs {rnd['deletion_auc']:.3f}, insertion "
                     f"{r['insertion_auc']:.3f} vs {rnd['insertion_auc']:.3f}); {r['seconds_per_image']:.2f} s/image.")
    return lines


def write(rows: list[dict], meta: dict, out: Path, name: str) -> None:
    (out / f"{name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    lines = [f"# Saliency faithfulness: deletion / insertion AUC ({meta['model']})", "", f"`{meta['command']}`", "",
             f"{meta['n_images']} test images of `{meta['run']}` (classes in turn), input {meta['input_size']}, "
             f"CAM layer `{meta['cam_layer']}` ({meta['cam_grid']} feature map). Each map explains S's own top-1 "
             f"class; {meta['steps']} steps; deletion fills with the mean colour, insertion starts from a blur.", "",
             "| method | deletion AUC (lower = better) | insertion AUC (higher = better) | insertion - deletion | s / image |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['deletion_auc']:.3f} ± {r['deletion_std']:.3f} | {r['insertion_auc']:.3f} ± "
              f"{r['insertion_std']:.3f} | {r['score']:.3f} | {r['seconds_per_image']:.2f} |" for r in rows]
    lines += ["", "## Reading", "", *conclusions(rows),
              "", "Seconds are on a shared 2-core CPU; compare them within this table only."]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _output_grid(model: torch.nn.Module, layer: torch.nn.Module, x: np.ndarray) -> tuple[int, int]:
    """Spatial size of `layer`'s output: how coarse the CAMs taken there are."""
    shapes = []
    hook = layer.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        model(torch.from_numpy(x))
    hook.remove()
    return shapes[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--methods", default=",".join((*CAMS, "occlusion")))
    ap.add_argument("--layer", help="CAM target layer (default: the last feature map)")
    ap.add_argument("--name", default="cam_faithfulness")
    a = ap.parse_args(argv)
    runner = TorchRunner(a.run / "model.safetensors", threads=None)
    pp = PreprocessConfig.from_dict(runner.meta["preprocess"])
    images = sample_manifest(a.run / "data" / "test.json", a.n)
    x = np.stack([preprocess_numpy(load_image(p), pp) for p in images]).astype(np.float32)
    probe = compute_cams(runner.model, torch.from_numpy(x[:1]), CamConfig("gradcam", a.layer))
    layer = dict(runner.model.named_modules())[probe.layer]
    grid = _output_grid(runner.model, layer, x[:1])
    meta = {"command": "HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cam_faithfulness.py "
                       + " ".join(argv if argv is not None else sys.argv[1:]),
            "run": str(a.run), "model": f"S = {runner.meta['architecture']}", "n_images": len(images),
            "input_size": list(pp.input_size), "cam_layer": probe.layer, "cam_grid": f"{grid[0]}x{grid[1]}",
            "steps": FaithfulnessConfig().steps, "torch_threads": torch.get_num_threads()}
    rows = measure(runner, x, [m.strip() for m in a.methods.split(",") if m.strip()], a.layer)
    write(rows, meta, Path(__file__).parent / "results", a.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
