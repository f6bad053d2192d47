"""Training-step time with channels-last (NHWC) input batches vs contiguous (NCHW), side by side.

What the trainer's `channels_last` default rests on: one `ours`-style step (forward + backward of S, a
no-grad forward of S', AdamW step) per call, for each student at its size, the two input orders
timed in interleaved rounds (same background load for both); the median of each round, the best
round kept. Only the input's order changes, as in the trainer: weights stay contiguous.

    .venv/bin/python benchmarks/channels_last.py [--threads 1 --rounds 3 --steps 4]
Writes benchmarks/results/channels_last.{json,md}.
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
from results_io import write_results  # noqa: E402

# (timm name, kwargs, input px, batch): the quickstart's Lite0, then the three students at 224 px
CASES = [("tf_efficientnet_lite0", {}, 64, 32), ("tf_efficientnet_lite0", {}, 224, 16),
         ("convnext_femto", {"ls_init_value": 1.0}, 224, 16), ("vit_tiny_patch16_224", {}, 224, 16)]


def step_seconds(student: torch.nn.Module, aux: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 opt: torch.optim.Optimizer, steps: int) -> float:
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.no_grad():
            aux(x)
        loss = torch.nn.functional.cross_entropy(student(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name: str, kwargs: dict, px: int, batch: int, rounds: int, steps: int) -> dict:
    import timm

    torch.manual_seed(0)
    student = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    aux = copy.deepcopy(student)
    opt = torch.optim.AdamW(student.parameters(), 1e-4)
    x, y = torch.randn(batch, 3, px, px), torch.randint(0, 10, (batch,))
    inputs = {"contiguous": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
    for v in inputs.values():  # warm-up: oneDNN primitive creation per layout
        step_seconds(student, aux, v, y, opt, 1)
    per_round: dict[str, list[float]] = {k: [] for k in inputs}
    for _ in range(rounds):
        for k, v in inputs.items():
            per_round[k].append(step_seconds(student, aux, v, y, opt, steps))
    best = {k: min(v) for k, v in per_round.items()}
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in student.modules())
    return {"model": name, "px": px, "batch": batch, "has_batchnorm": has_bn,
            "contiguous_s": round(best["contiguous"], 4), "channels_last_s": round(best["channels_last"], 4),
            "speedup": round(best["contiguous"] / best["channels_last"], 3),
            "rounds_s": {k: [round(t, 4) for t in v] for k, v in per_round.items()}}


def markdown(res: dict) -> str:
    lines = ["# Channels-last input batches in a training step", "", f"Command: `{res['command']}`", "",
             f"Machine: {res['cpu']}; torch {res['torch']}, {res['threads']} thread(s); load average at start "
             f"{res['load'][0]:.2f}, end {res['load'][1]:.2f} (rounds interleave the two orders, so both see the "
             "same load).", "", "| student | px | batch | BatchNorm | NCHW s/step | NHWC s/step | speed-up |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['px']} | {r['batch']} | {r['has_batchnorm']} | {r['contiguous_s']} | "
              f"{r['channels_last_s']} | {r['speedup']}x |" for r in res["rows"]]
    slowest = min(res["rows"], key=lambda r: r["speedup"])
    lines += ["", f"Slowest case {slowest['model']} at {slowest['px']} px: {slowest['speedup']}x. The trainer's "
              "`channels_last` (default true) feeds NHWC batches"
              + (" everywhere: no student here trains slower with it." if slowest["speedup"] >= 0.95 else
                 f"; {slowest['model']} trains slower with it: set channels_last=false for it.")]
    return "\n".join(lines) + "\n"


def run_over_cases(name: str, doc: str, measure, markdown, argv: list[str] | None, threads: int) -> int:
    """The shared main of the step benchmarks: every CASES student through `measure(name, kwargs, px, batch,
    rounds, steps)`, then NAME.{json,md} with the machine, the load and the rows."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="steps per round per variant (median)")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from edgekd.export.bench import cpu_info

    torch.set_num_threads(a.threads)
    cpu, load0 = cpu_info(), os.getloadavg()[0]
    rows = []
    for model, kwargs, px, batch in CASES:
        rows.append(measure(model, kwargs, px, batch, a.rounds, a.steps))
        print(rows[-1], flush=True)
    res = {"command": f"python benchmarks/{name}.py" + "".join(f" {x}" for x in (argv or sys.argv[1:])),
           "cpu": f"{cpu['cpu_model']} ({', '.join(k for k, v in cpu['isa'].items() if v)})",
           "torch": torch.__version__, "threads": a.threads, "load": (load0, os.getloadavg()[0]), "rows": rows}
    write_results(a.results_dir, name, res, markdown(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_over_cases("channels_last", __doc__, measure, markdown, argv, threads=1)


if __name__ == "__main__":
    sys.exit(main())
