"""`edgekd sweep`: datasets x fractions x methods x draws (x hyperparameter values) -> paper tables.

    edgekd sweep --config lite2_to_lite0_fmnist --out runs/sweep \
        --fractions 0.01 0.05 0.1 --methods ours cm1 cm2 cm3 cm4 --draws 5
    edgekd sweep --config vit_s_to_t --out runs/alpha --methods ours \
        --param method.alpha=0.2,0.4,0.6,0.8,1.0            # Fig. 6 (also method.beta, method.tau)

Every cell is an ordinary run directory (`OUT/cells/DATASET/fFRACTION/METHOD[/PARAM]/drawD`),
so a cell can be inspected, exported or re-evaluated like any run. Resumable: a cell whose
`results.json` exists and whose saved config equals the requested one is not re-run (a cell
started with different settings is re-run from scratch, so a table never mixes settings); a cell
interrupted with the same settings continues from its last epoch checkpoint. Draw d trains on
subset draw d (`data.draw=d`) with training seed `seed + d`; the train/test split itself is the
same for all draws. A failed cell is recorded and the sweep goes on.
The table (`OUT/table.md`, `OUT/table.json`) is rewritten after every cell: test accuracy as
mean ± sample std (ddof=1) over the finished draws, like the paper's Tables 2-7, plus the
failed cells. Launchers: cells one after another on this machine (inproc, subprocess,
accelerate) or as Ray tasks across a cluster (ray, `edgekd.sweep_ray`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from edgekd.config import METHODS, load_config
from edgekd.errors import EdgeKDError

LAUNCHERS = ("inproc", "subprocess", "accelerate", "ray")


@dataclass
class Cell:
    dataset: str
    fraction: float
    method: str
    draw: int
    params: dict[str, str] = field(default_factory=dict)

    @property
    def param_label(self) -> str:
        return ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.params.items())

    def run_dir(self, out: Path) -> Path:
        parts = [_slug(self.dataset), f"f{self.fraction:g}", self.method]
        if self.params:
            parts.append(_slug(self.param_label))
        return out / "cells" / Path(*parts) / f"draw{self.draw}"

    def overrides(self, out: Path, seed: int) -> list[str]:
        return [
            f"data.root={self.dataset}", f"data.fraction={self.fraction}", f"data.draw={self.draw}",
            f"seed={seed + self.draw}", f"method={self.method}", *(f"{k}={v}" for k, v in self.params.items()),
            f"run_dir={self.run_dir(out)}", "progress=false",
        ]


def _slug(text: str) -> str:
    text = os.path.basename(os.path.normpath(text)) if os.sep in text else text
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in text) or "_"


def parse_params(items: list[str]) -> list[dict[str, str]]:
    """`["method.alpha=0.3,0.6", "method.tau=2,4"]` -> the cartesian product as override dicts."""
    axes = []
    for item in items:
        if "=" not in item:
            raise EdgeKDError(f"--param {item!r}: expected KEY=V1,V2,... (e.g. method.alpha=0.2,0.6,1.0)")
        key, values = item.split("=", 1)
        axes.append([(key, v.strip()) for v in values.split(",") if v.strip()])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def plan(datasets: list[str], fractions: list[float], methods: list[str], draws: int,
         params: list[dict[str, str]]) -> list[Cell]:
    """Draw-major order, so every table entry gets its first value early in a long sweep."""
    return [Cell(ds, f, m, d, p) for d in range(draws) for ds in datasets for f in fractions for m in methods
            for p in params]


def _die_with_parent() -> None:
    """In the trainer child: stop when the sweep process (or Ray worker) running it is killed.

    Otherwise an orphaned trainer keeps writing into the run directory while the rerun of the
    sweep trains the same cell again.
    """
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def run_cell(cell: Cell, out: Path, base: list[str], seed: int, launcher: str, num_processes: int) -> None:
    """Train one cell into its run directory (raises on failure)."""
    argv = [*base, *cell.overrides(out, seed)]
    run_dir = cell.run_dir(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    if launcher == "inproc":
        from edgekd import train

        if train.main(argv) != 0:
            raise RuntimeError("train returned non-zero")
        return
    if launcher == "subprocess":
        cmd = [sys.executable, "-m", "edgekd.train", *argv]
    else:
        accel = Path(sys.executable).parent / "accelerate"
        multi = ["--multi_gpu"] if num_processes > 1 else []
        cmd = [str(accel), "launch", *multi, "--num_processes", str(num_processes), "--num_machines", "1",
               "--dynamo_backend", "no", "-m", "edgekd.train", *argv]
    with open(run_dir / "train.log", "w") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                           preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    if r.returncode != 0:
        raise RuntimeError(f"exit {r.returncode}; see {run_dir / 'train.log'}")


VOLATILE = ("resume", "stop_after", "progress", "num_threads", "trackers", "log_every", "num_workers")


def same_config(cell: Cell, out: Path, config: str, base_overrides: list[str], seed: int) -> bool:
    """The cell's run directory was started with the config this sweep asks for."""
    run_dir = cell.run_dir(out)
    if not (run_dir / "config.yaml").exists():
        return False
    want = load_config(config, [*base_overrides, *cell.overrides(out, seed)]).to_dict()
    have = load_config(run_dir / "config.yaml").to_dict()
    for key in VOLATILE:
        want.pop(key, None)
        have.pop(key, None)
    return want == have


def is_done(cell: Cell, out: Path, config: str, base_overrides: list[str], seed: int) -> bool:
    """Finished AND trained with the config this sweep asks for (a changed setting re-runs the cell)."""
    return (cell.run_dir(out) / "results.json").exists() and same_config(cell, out, config, base_overrides, seed)


def run_local(cells: list[Cell], runner: Callable[[Cell], None]) -> Iterator[tuple[Cell, str | None]]:
    """One cell after another on this machine; yield (cell, None) or (cell, error) as each ends."""
    for c in cells:
        try:
            runner(c)
        except Exception as e:  # noqa: BLE001 - record, keep going; the table shows what finished
            yield c, f"{type(e).__name__}: {e}"
        else:
            yield c, None


def _mean_std(values: list[float]) -> tuple[float, float]:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def collect(cells: list[Cell], out: Path, metric: str = "accuracy") -> dict[str, Any]:
    """Finished cells -> {"cells": [...], "table": {dataset: {row: {fraction: stats}}}}."""
    rows: list[dict[str, Any]] = []
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for c in cells:
        f = c.run_dir(out) / "results.json"
        if not f.exists():
            continue
        res = json.loads(f.read_text())
        rows.append({**asdict(c), "accuracy": res["accuracy"], "macro_f1": res["macro_f1"],
                     "train_seconds": res.get("train_seconds"), "run_dir": str(c.run_dir(out))})
    for r in rows:
        plabel = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in r["params"].items())
        label = r["method"] + (f" ({plabel})" if plabel else "")
        entry = table.setdefault(_slug(r["dataset"]), {}).setdefault(label, {}).setdefault(f"{r['fraction']:g}", {"values": []})
        entry["values"].append(r[metric])
    for ds in table.values():
        for row in ds.values():
            for e in row.values():
                e["mean"], e["std"] = _mean_std(e["values"])
                e["n"] = len(e["values"])
    return {"metric": metric, "cells": rows, "table": table}


def to_markdown(summary: dict[str, Any], fractions: list[float], title: str = "") -> str:
    """One table per dataset; the best mean per column in bold (as in the paper)."""
    cols = [f"{f:g}" for f in fractions]
    lines = [f"# {title}", ""] if title else []
    n_max = max((e["n"] for rows in summary["table"].values() for r in rows.values() for e in r.values()), default=0)
    for ds, rows in summary["table"].items():
        lines += [f"## {ds} (test {summary['metric']}, mean ± std over draws)", "",
                  "| method | " + " | ".join(f"{float(c) * 100:g}%" for c in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        best = {c: max((r[c]["mean"] for r in rows.values() if c in r), default=None) for c in cols}
        for label, row in rows.items():
            cells = []
            for c in cols:
                if c not in row:
                    cells.append("–")
                    continue
                e = row[c]
                s = f"{e['mean']:.3f} ± {e['std']:.3f}" + ("" if e["n"] == n_max else f" (n={e['n']})")
                cells.append(f"**{s}**" if e["mean"] == best[c] else s)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if summary.get("failed"):  # a failed cell is missing from its mean: say so beside the table
        lines += [f"## failed cells ({len(summary['failed'])})", "", "| cell | error |", "|---|---|"]
        lines += [f"| {f['run_dir']} | {f['error'].replace('|', '/')} |" for f in summary["failed"]]
        lines.append("")
    return "\n".join(lines)


def write_table(cells: list[Cell], out: Path, fractions: list[float], extra: dict[str, Any] | None = None) -> dict:
    summary = collect(cells, out)
    summary.update(extra or {})
    (out / "table.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(to_markdown(summary, fractions))
    return summary


def _parse(argv: list[str] | None) -> argparse.Namespace:
    from edgekd.sweep_ray import RayOptions as Ray  # its dataclass defaults, for the help (no Ray import)

    p = argparse.ArgumentParser(prog="edgekd sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="base config (YAML path or preset name)")
    p.add_argument("--out", required=True, help="sweep directory (cells/ + table.md + table.json)")
    p.add_argument("--datasets", nargs="+", default=None, help="data.root values (default: the config's)")
    p.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.05, 0.1])
    p.add_argument("--methods", nargs="+", default=["ours", "cm1", "cm2", "cm3", "cm4"])
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2",
                   help="hyperparameter axis, e.g. method.alpha=0.2,0.6,1.0 (repeatable: cartesian product)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="subprocess",
                   help="inproc (fastest), subprocess (isolated, default), accelerate (multi-process) "
                   "or ray (cells as Ray tasks across a cluster; pip install 'edgekd[cluster]')")
    p.add_argument("--num-processes", type=int, default=1, help="with --launcher accelerate")
    ray = p.add_argument_group("--launcher ray (run directories must be on a file system every node sees)")
    ray.add_argument("--ray-address", dest="address", default=None,
                     help="cluster to join, e.g. HEAD_IP:6379 (default: a Ray running here, else a new local one)")
    ray.add_argument("--cpus-per-cell", type=float, default=None, help=f"CPUs Ray reserves per cell (default {Ray.cpus_per_cell:g})")
    ray.add_argument("--gpus-per-cell", type=float, default=None,
                     help=f"GPUs per cell (default {Ray.gpus_per_cell:g}); above 1 the cell trains with accelerate --multi_gpu")
    ray.add_argument("--retries", type=int, default=None, help=f"extra attempts for a failed cell (default {Ray.retries})")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each finished cell's checkpoints/ (default: delete them, ~50-100 MB per cell)")
    p.add_argument("--table-only", action="store_true", help="rebuild the table from finished cells")
    p.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="applied to every cell")
    return p.parse_args(argv)


def _executor(a: argparse.Namespace, out: Path, base: list[str], seed: int
              ) -> Callable[[list[Cell]], Iterator[tuple[Cell, str | None]]]:
    """The launcher's way of running cells; `run_cell` is looked up here so the Ray tasks carry it."""
    from edgekd import sweep_ray

    given = {f.name: getattr(a, f.name) for f in fields(sweep_ray.RayOptions) if getattr(a, f.name) is not None}
    if a.launcher != "ray":
        if given:
            raise EdgeKDError(f"--ray-address, --cpus-per-cell, --gpus-per-cell and --retries only apply to "
                              f"--launcher ray (got --launcher {a.launcher} with {', '.join(given)})")
        return partial(run_local, runner=partial(run_cell, out=out, base=base, seed=seed, launcher=a.launcher,
                                                 num_processes=a.num_processes))
    sweep_ray.import_ray()  # fail before any work if the extra is missing
    opts = sweep_ray.RayOptions(**given)
    if opts.retries < 0 or opts.cpus_per_cell <= 0 or opts.gpus_per_cell < 0:
        raise EdgeKDError("--retries and --gpus-per-cell must be >= 0 and --cpus-per-cell > 0")
    launcher, procs = opts.cell_launcher()
    runner = partial(run_cell, out=out, base=base, seed=seed, launcher=launcher, num_processes=procs)
    return partial(sweep_ray.run_cells, runner=runner, out=out, opts=opts)


def _execute(todo: list[Cell], done: list[Cell], cells: list[Cell], execute: Callable, out: Path,
             fractions: list[float], extra: dict[str, Any], keep_checkpoints: bool) -> list[dict[str, Any]]:
    """Run the cells, rewriting the table as each one ends; returns the failed cells.

    `done` is kept in plan order, so the table does not depend on the order cells finish in.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    failed: list[dict[str, Any]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("sweep", total=len(cells), completed=len(cells) - len(todo))
        for c, error in execute(todo):
            if error is None and not (c.run_dir(out) / "results.json").exists():
                error = (f"the cell finished but {c.run_dir(out) / 'results.json'} is missing here "
                         "(with --launcher ray, --out must be on a file system every node shares)")
            if error is not None:
                failed.append({**asdict(c), "run_dir": str(c.run_dir(out)), "error": error})
                bar.console.print(f"[red]cell failed[/red] {c.run_dir(out)}: {error}")
            else:
                done.append(c)
                done.sort(key=cells.index)
                if not keep_checkpoints:  # the cell is finished: its resume state is dead weight
                    shutil.rmtree(c.run_dir(out) / "checkpoints", ignore_errors=True)
                res = json.loads((c.run_dir(out) / "results.json").read_text())
                bar.console.print(f"{c.run_dir(out)}: accuracy {res['accuracy']:.4f} "
                                  f"({res.get('train_seconds') or 0:.0f} s training)")
            write_table(done, out, fractions, {**extra, "failed": failed})
            bar.advance(task)
    return failed


def main(argv: list[str] | None = None) -> int:
    a = _parse(argv)
    bad = [m for m in a.methods if m not in METHODS]
    if bad:
        raise EdgeKDError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    base_cfg = load_config(a.config, a.overrides)  # validates the base overrides once, up front
    out = Path(a.out)
    # resume=true: a cell interrupted (killed driver, crashed worker) continues from its last epoch
    base = ["--config", str(a.config), *a.overrides, "resume=true"]
    execute = _executor(a, out, base, base_cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    cells = plan(a.datasets or [base_cfg.data.root], a.fractions, a.methods, a.draws, parse_params(a.param))
    for c in cells:  # every cell's override set must be valid before hours of training start
        load_config(a.config, [*a.overrides, *c.overrides(out, base_cfg.seed)])
    extra = {"command": "edgekd sweep " + " ".join(argv if argv is not None else sys.argv[1:]),
             "fractions": a.fractions, "methods": a.methods, "draws": a.draws, "params": parse_params(a.param)}
    done = [c for c in cells if is_done(c, out, a.config, a.overrides, base_cfg.seed)]
    todo = [c for c in cells if c not in done]
    stale = [c for c in todo if (c.run_dir(out) / "config.yaml").exists()
             and not same_config(c, out, a.config, a.overrides, base_cfg.seed)]
    if a.dry_run:
        for c in cells:
            print(("done " if c in done else "stale " if c in stale else "todo ") + str(c.run_dir(out)))
        return 0
    if a.table_only:
        write_table(done, out, a.fractions, extra)
        print((out / "table.md").read_text())
        return 0
    for c in stale:  # started with other settings: neither its result nor its checkpoints may be reused
        (c.run_dir(out) / "results.json").unlink(missing_ok=True)
        shutil.rmtree(c.run_dir(out) / "checkpoints", ignore_errors=True)
    print(f"sweep: {len(cells)} cells, {len(done)} already done, {len(todo)} to run"
          + (f" ({len(stale)} started with other settings: re-run)" if stale else "")
          + f" -> {out} (launcher {a.launcher})")
    failed = _execute(todo, done, cells, execute, out, a.fractions, extra, a.keep_checkpoints)
    write_table(done, out, a.fractions, {**extra, "failed": failed})
    print((out / "table.md").read_text())
    if failed:
        print(f"{len(failed)} cell(s) failed:", file=sys.stderr)
        for f in failed:
            print(f"  {f['run_dir']}: {f['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
