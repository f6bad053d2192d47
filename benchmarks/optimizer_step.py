"""AdamW's three torch implementations in a training step, side by side: the per-tensor loop (torch's CPU
default), `foreach` and `fused` (what the trainer builds where torch has it: `edgekd.optim.fusable`).

The same `ours`-style step as `channels_last.py` (forward + backward of S, a no-grad forward of S', the
AdamW step) on NHWC batches, the three optimizers timed in interleaved rounds (same background load
for each); the median of each round, the best round kept. Also the largest parameter difference from the
loop's after those steps from the same start: one algorithm, so only float rounding, which the training
steps then amplify (most where BatchNorm normalizes with the batch).

    .venv/bin/python benchmarks/optimizer_step.py [--threads 2 --rounds 3 --steps 4]
Writes benchmarks/results/optimizer_step.{json,md}.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from channels_last import run_over_cases, step_seconds  # noqa: E402

KINDS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def measure(name: str, kwargs: dict, px: int, batch: int, rounds: int, steps: int) -> dict:
    import timm

    torch.manual_seed(0)
    start = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    aux = copy.deepcopy(start)
    x = torch.randn(batch, 3, px, px).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    students = {k: copy.deepcopy(start) for k in KINDS}
    opts = {k: torch.optim.AdamW(students[k].parameters(), 1e-4, **kw) for k, kw in KINDS.items()}
    per_round: dict[str, list[float]] = {k: [] for k in KINDS}
    for k in KINDS:  # warm-up: oneDNN primitives, optimizer state
        step_seconds(students[k], aux, x, y, opts[k], 1)
    for _ in range(rounds):
        for k in KINDS:
            per_round[k].append(step_seconds(students[k], aux, x, y, opts[k], steps))
    best = {k: min(v) for k, v in per_round.items()}
    ref = dict(students["loop"].named_parameters())
    diff = max(float((p - ref[n]).abs().max()) for k in ("foreach", "fused")
               for n, p in students[k].named_parameters())
    return {"model": name, "px": px, "batch": batch, "params": sum(p.numel() for p in start.parameters()),
            "tensors": sum(1 for _ in start.parameters()), **{f"{k}_s": round(v, 4) for k, v in best.items()},
            "fused_speedup": round(best["loop"] / best["fused"], 3), "max_param_diff": diff,
            "rounds_s": {k: [round(t, 4) for t in v] for k, v in per_round.items()}}


def markdown(res: dict) -> str:
    lines = ["# AdamW's implementations in a training step", "", f"Command: `{res['command']}`", "",
             f"Machine: {res['cpu']}; torch {res['torch']}, {res['threads']} thread(s); load average at start "
             f"{res['load'][0]:.2f}, end {res['load'][1]:.2f} (rounds interleave the three, so each sees the "
             "same load).", "",
             "| student | px | batch | tensors | loop s/step | foreach s/step | fused s/step | fused vs loop | "
             "max param diff |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['px']} | {r['batch']} | {r['tensors']} | {r['loop_s']} | {r['foreach_s']} | "
              f"{r['fused_s']} | {r['fused_speedup']}x | {r['max_param_diff']:.1e} |" for r in res["rows"]]
    worst = min(res["rows"], key=lambda r: r["fused_speedup"])
    lines += ["", f"Fused AdamW's smallest gain here: {worst['fused_speedup']}x ({worst['model']} at {worst['px']} px). "
              + ("The trainer builds the fused kernel wherever torch has it (`edgekd.optim.fusable`): no student "
                 "here steps slower with it." if worst["fused_speedup"] >= 0.97 else
                 f"{worst['model']} steps slower with it on this machine.")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_over_cases("optimizer_step", __doc__, measure, markdown, argv, threads=2)


if __name__ == "__main__":
    sys.exit(main())
