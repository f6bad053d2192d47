"""Issue 19's EMA variants, each paired against the offline preset's `ours` at 1 % (Fashion-MNIST stand-in).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ema_variants.py [--epochs 16] [--draws 3] [--out DIR]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ema_variants.py --table-only   # from the cells finished so far

Every variant is one `method.*` override on top of the preset's `ours` (S' on another augmented view;
a slower beta 0.99 / 0.999; one EMA update per epoch; a warming-up beta; beta=auto), trained on the
same subset with the same seed as `ours` and `cm1` in each draw, so differences are paired by draw.
The schedule is the proxy's (16 epochs at 1 %, 32 px, one thread per cell): the paper-regime schedule
(100 epochs, `proxy_fmnist.py --regime paper`) costs ~20 min per cell here, too much for 8 x 3 cells.
Besides test accuracy, each row shows whether S' still carries anything of its own: the logged KD term
and the parameter distance ||theta_S' - theta_S|| / ||theta_S|| at the middle and the end of training.
Writes benchmarks/results/ema_variants.{json,md}; every number in them comes from the cells.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.proxy_fmnist import paired, settings, verdict  # noqa: E402
from edgekd import sweep  # noqa: E402
from benchmarks.results_io import write_results  # noqa: E402
from edgekd.export.bench import cpu_info  # noqa: E402

OUT = REPO / "benchmarks" / "results"
VARIANTS = {  # label -> the one override on top of the preset's `ours`
    "S' sees another augmented view": "method.aux_view=augmented",
    "beta 0.99": "method.beta=0.99",
    "beta 0.999": "method.beta=0.999",
    "EMA once per epoch": "method.ema_every=epoch",
    "beta warm-up": "method.beta_warmup=true",
    "beta=auto": "method.beta=auto",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "runs" / "ema_variants"))
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--test-limit", type=int, default=100, help="test images per class")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=OUT, help="folder for ema_variants.{json,md} (a smoke run: a temp dir)")
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args(argv)
    a.budget = {0.01: a.epochs}  # what proxy_fmnist.settings reads
    return a


def specs(a: argparse.Namespace) -> list[tuple[Path, list[str], list[str]]]:
    """(sweep dir, methods, params): the reference pair first, then one sweep per variant."""
    out = Path(a.out)
    return [(out / "reference", ["ours", "cm1"], [])] + [(out / k.replace("'", "").replace(" ", "_"), ["ours"], [ov])
                                                          for k, ov in VARIANTS.items()]


def run(a: argparse.Namespace) -> None:
    for sweep_dir, methods, params in specs(a):
        sweep.main(["--config", "lite2_to_lite0_fmnist", "--out", str(sweep_dir), "--datasets", "fashion-mnist",
                    "--fractions", "0.01", "--methods", *methods, "--draws", str(a.draws), "--launcher", "inproc",
                    *sum((["--param", p] for p in params), []), *settings(a, 0.01)])


def cell_label(cell: dict) -> str:
    if not cell["params"]:
        return cell["method"]
    override = next(f"{k}={v}" for k, v in cell["params"].items())
    return "ours, " + next(k for k, v in VARIANTS.items() if v == override)


def trace(run_dir: str) -> dict:
    """What S' carries of its own: KD term and parameter distance at mid-run and at the end."""
    with open(Path(run_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    mid, last = rows[len(rows) // 2], rows[-1]
    num = lambda r, k: float(r[k]) if r.get(k) not in (None, "") else None  # noqa: E731
    return {"kd_mid": num(mid, "train_kd"), "kd_end": num(last, "train_kd"),
            "distance_mid": num(mid, "aux_distance"), "distance_end": num(last, "aux_distance"),
            "train_seconds": sum(float(r["epoch_seconds"]) for r in rows)}


def gather(a: argparse.Namespace) -> list[dict]:
    rows = []
    for sweep_dir, methods, params in specs(a):
        cells = sweep.plan(["fashion-mnist"], [0.01], methods, a.draws, sweep.parse_params(params))
        for c in sweep.collect(cells, sweep_dir)["cells"]:
            rows.append({**c, "label": cell_label(c), **trace(c["run_dir"])})
    return rows


def summarize(rows: list[dict]) -> dict:
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    mean = lambda cs, k: statistics.mean(v) if (v := [c[k] for c in cs if c[k] is not None]) else None  # noqa: E731
    table = {lab: {"accuracy": [c["accuracy"] for c in cs], "n": len(cs),
                   **{k: mean(cs, k) for k in ("kd_mid", "kd_end", "distance_mid", "distance_end", "train_seconds")}}
             for lab, cs in by_label.items()}
    for t in table.values():
        acc = t["accuracy"]
        t["mean"], t["std"] = statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else 0.0
    pairs = {lab: paired(_as_cells(rows), lab, "ours", 0.01) for lab in table if lab not in ("ours",)}
    return {"table": table, "minus_preset_ours": pairs}


def _as_cells(rows: list[dict]) -> list[dict]:
    """proxy_fmnist.paired reads cells labelled by its own ABLATIONS; relabel through the method name."""
    return [{**r, "method": r["label"], "params": {}} for r in rows]


def markdown(res: dict) -> str:
    fmt = lambda x: "–" if x is None else f"{x:.2g}"  # noqa: E731
    lines = ["# EMA variants at 1 % (Fashion-MNIST stand-in, Lite2 -> Lite0, 32 px)", "", f"`{res['command']}`", "",
             res["setup"], "",
             "| variant | test accuracy (mean ± std) | − preset ours (pt, paired) | KD mid / end | ‖S′−S‖/‖S‖ mid / end |",
             "|---|---|---|---|---|"]
    for lab, t in res["table"].items():
        d = res["minus_preset_ours"].get(lab)
        diff = f"{d['mean_pt']:+.1f} ± {d['std_pt']:.1f} ({d['wins']}/{d['n']} ahead)" if d else "reference"
        lines.append(f"| {lab} | {t['mean']:.3f} ± {t['std']:.3f} (n={t['n']}) | {diff} | "
                     f"{fmt(t['kd_mid'])} / {fmt(t['kd_end'])} | {fmt(t['distance_mid'])} / {fmt(t['distance_end'])} |")
    lines += ["", "## Conclusions (computed from the cells)", ""]
    lines += [f"- {verdict(lab, 'ours', d)}" for lab, d in res["minus_preset_ours"].items()]
    better = [lab for lab, d in res["minus_preset_ours"].items()
              if lab != "cm1" and d and d["n"] >= 3 and d["wins"] == d["n"] and d["mean_pt"] > 0]
    lines += ["", "- Preset choice: " + (f"{', '.join(better)} beat the preset's ours in every draw."
                                         if better else "no variant beats the preset's ours in every draw, so the "
                                         "offline preset keeps its EMA settings."), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    t0 = time.time()
    if not a.table_only:
        run(a)
    rows = gather(a)
    res = summarize(rows)
    res.update({
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ema_variants.py "
                   + " ".join(x for x in (argv if argv is not None else sys.argv[1:]) if x not in ("--table-only",)),
        "setup": (f"1 % of the Fashion-MNIST training split ({a.draws} draws: subset d, seed d, shared by every "
                  f"variant), {a.epochs} epochs, {a.image_size} px, offline preset otherwise; test = "
                  f"{a.test_limit * 10} images; {a.threads} torch thread(s) per cell; the machine in the JSON."),
        "epochs": a.epochs, "cells": rows, "machine": {**cpu_info(), "loadavg_end": os.getloadavg()},
        "wall_seconds_this_invocation": round(time.time() - t0, 1),
    })
    write_results(a.results, "ema_variants", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
