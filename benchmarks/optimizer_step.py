"""AdamW step time: torch's fused kernel vs its default on a CPU (a loop over the tensors), side by side.

What `edgekd.optim.adamw` (fused=True) rests on. For each student, the trainer's two parameter groups
(decay on weights, none on biases and norm vectors), random gradients, the two forms timed in
interleaved rounds (same background load for both), the median of each round, the best round kept;
beside them one whole `ours`-style training step (forward + backward of S, a no-grad forward of S',
fused AdamW step) at the preset's batch, so the saving reads as a share of the step. The two forms
are also checked to compute the same update (max |difference| of the parameters after 3 steps).

    .venv/bin/python benchmarks/optimizer_step.py [--threads 2 --rounds 3 --steps 20]
Writes benchmarks/results/optimizer_step.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from channels_last import step_seconds  # noqa: E402
from results_io import write_results  # noqa: E402

# (timm name, kwargs, input px, batch): the quickstart's Lite0, then the two 224-px students
CASES = [("tf_efficientnet_lite0", {}, 64, 32), ("convnext_femto", {"ls_init_value": 1.0}, 224, 16),
         ("vit_tiny_patch16_224", {}, 224, 16)]
FORMS = {"default": {"foreach": False}, "fused": {"fused": True}}


def groups(model: torch.nn.Module) -> list[dict]:
    """The trainer's groups (`edgekd.optim.build_optimizer`)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    return [{"params": decay, "weight_decay": 0.05}, {"params": [p for p in model.parameters() if p.ndim <= 1],
                                                      "weight_decay": 0.0}]


def timed_steps(opt: torch.optim.Optimizer, steps: int) -> float:
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def same_update(model: torch.nn.Module) -> float:
    """Max |parameter difference| after 3 steps of each form from the same start and gradients."""
    ends = []
    for kw in FORMS.values():
        m = copy.deepcopy(model)
        opt = torch.optim.AdamW(groups(m), lr=1e-3, **kw)
        for s in range(3):
            torch.manual_seed(s)
            for p in m.parameters():
                p.grad = torch.randn_like(p)
            opt.step()
        ends.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    return float((ends[0] - ends[1]).abs().max())


def measure(name: str, kwargs: dict, px: int, batch: int, rounds: int, steps: int) -> dict:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opts = {k: torch.optim.AdamW(groups(model), lr=1e-9, **kw) for k, kw in FORMS.items()}  # lr ~0: weights stay put
    for o in opts.values():
        timed_steps(o, 2)
    per_round: dict[str, list[float]] = {k: [] for k in opts}
    for _ in range(rounds):
        for k, o in opts.items():
            per_round[k].append(timed_steps(o, steps))
    best = {k: min(v) for k, v in per_round.items()}
    x = torch.randn(batch, 3, px, px).contiguous(memory_format=torch.channels_last)
    train_step = step_seconds(model, copy.deepcopy(model), x, torch.randint(0, 10, (batch,)),
                              torch.optim.AdamW(groups(model), lr=1e-9, fused=True), 3)
    return {"model": name, "px": px, "batch": batch, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "default_ms": round(best["default"] * 1e3, 2), "fused_ms": round(best["fused"] * 1e3, 2),
            "speedup": round(best["default"] / best["fused"], 2),
            "saved_share_of_step": round((best["default"] - best["fused"]) / (train_step + best["default"] - best["fused"]), 3),
            "train_step_ms": round(train_step * 1e3, 1), "max_abs_diff_after_3_steps": same_update(model)}


def markdown(res: dict) -> str:
    lines = ["# AdamW step: fused vs torch's default on a CPU", "", f"Command: `{res['command']}`", "",
             f"Machine: {res['cpu']}; torch {res['torch']}, {res['threads']} thread(s); load average at start "
             f"{res['load'][0]:.2f}, end {res['load'][1]:.2f} (rounds interleave the two forms).", "",
             "| student | params (M) | default ms | fused ms | speed-up | share of an `ours` step saved | step ms (px, batch) "
             "| max abs diff after 3 steps |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['params_m']} | {r['default_ms']} | {r['fused_ms']} | {r['speedup']}x | "
              f"{100 * r['saved_share_of_step']:.1f} % | {r['train_step_ms']} ({r['px']}, {r['batch']}) | "
              f"{r['max_abs_diff_after_3_steps']:.1e} |" for r in res["rows"]]
    slowest = min(res["rows"], key=lambda r: r["speedup"])
    lines += ["", f"Smallest gain: {slowest['model']} {slowest['speedup']}x. The trainer uses fused AdamW "
              "(`edgekd.optim.adamw`)" + (": faster for every student here, the same update to float rounding."
                                          if slowest["speedup"] > 1.0 else f", slower for {slowest['model']} here.")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="the trainer's default on 2 cores")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per round per form (median)")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args(argv)
    from edgekd.export.bench import cpu_info

    torch.set_num_threads(a.threads)
    cpu, load0 = cpu_info(), os.getloadavg()[0]
    rows = []
    for case in CASES:
        rows.append(measure(*case, a.rounds, a.steps))
        print(rows[-1], flush=True)
    res = {"command": "python benchmarks/optimizer_step.py" + "".join(f" {x}" for x in (argv or sys.argv[1:])),
           "cpu": f"{cpu['cpu_model']} ({', '.join(k for k, v in cpu['isa'].items() if v)})",
           "torch": torch.__version__, "threads": a.threads, "load": (load0, os.getloadavg()[0]), "rows": rows}
    write_results(a.results_dir, "optimizer_step", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
