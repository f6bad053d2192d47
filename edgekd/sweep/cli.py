"""`edgekd sweep`: datasets x fractions x methods x draws (x hyperparameter values) -> paper tables.

    edgekd sweep --config lite2_to_lite0_fmnist --out runs/sweep \
        --fractions 0.01 0.05 0.1 --methods ours cm1 cm2 cm3 cm4 --draws 5
    edgekd sweep --config vit_s_to_t --out runs/alpha --methods ours \
        --param method.alpha=0.2,0.4,0.6,0.8,1.0            # Fig. 6 (also method.beta, method.tau)

Every cell is an ordinary run directory (`OUT/cells/DATASET/fFRACTION/METHOD[/PARAM]/drawD`),
so a cell can be inspected, exported or re-evaluated like any run. Resumable: a cell whose
`results.json` exists and whose saved config equals the requested one is not re-run (a cell
started with different settings is re-run from scratch, so a table never mixes settings; its old
run is moved aside to `drawD.old-<time>/`, never deleted); a cell interrupted with the same
settings continues from its last epoch checkpoint. Draw d trains on
subset draw d (`data.draw=d`) with training seed `seed + d`; the train/test split itself is the
same for all draws. A failed cell is recorded and the sweep goes on.
The table (`OUT/table.md`, `OUT/table.json`) is rewritten after every cell: test accuracy as
mean ± sample std (ddof=1) over the finished draws, like the paper's Tables 2-7, plus the
failed cells. Launchers: cells one after another on this machine (inproc, subprocess,
accelerate: `edgekd.sweep.launchers`) or as Ray tasks across a cluster (`edgekd.sweep.ray_launcher`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path
from typing import Any

from edgekd.config import METHODS, load_config
from edgekd.errors import EdgeKDError
from edgekd.rundir import RunDir
from edgekd.sweep import ray_launcher
from edgekd.sweep.launchers import LAUNCHERS, run_cell, run_local
from edgekd.sweep.plan import Cell, is_done, parse_params, plan, same_config
from edgekd.sweep.table import write_table


def _parse(argv: list[str] | None) -> argparse.Namespace:
    Ray = ray_launcher.RayOptions  # its dataclass defaults, for the help (no Ray import)

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
    given = {f.name: getattr(a, f.name) for f in fields(ray_launcher.RayOptions) if getattr(a, f.name) is not None}
    if a.launcher != "ray":
        if given:
            raise EdgeKDError(f"--ray-address, --cpus-per-cell, --gpus-per-cell and --retries only apply to "
                              f"--launcher ray (got --launcher {a.launcher} with {', '.join(given)})")
        return partial(run_local, runner=partial(run_cell, out=out, base=base, seed=seed, launcher=a.launcher,
                                                 num_processes=a.num_processes))
    ray_launcher.import_ray()  # fail before any work if the extra is missing
    opts = ray_launcher.RayOptions(**given)
    if opts.retries < 0 or opts.cpus_per_cell <= 0 or opts.gpus_per_cell < 0:
        raise EdgeKDError("--retries and --gpus-per-cell must be >= 0 and --cpus-per-cell > 0")
    launcher, procs = opts.cell_launcher()
    runner = partial(run_cell, out=out, base=base, seed=seed, launcher=launcher, num_processes=procs)
    return partial(ray_launcher.run_cells, runner=runner, out=out, opts=opts)


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


def _finished_without_results(d: RunDir) -> bool:
    """Its networks were saved but results.json is gone (deleted to re-run it) and so are its checkpoints."""
    return d.holds_run() and not d.resumable()


def main(argv: list[str] | None = None) -> int:
    a = _parse(argv)
    bad = [m for m in a.methods if m not in METHODS]
    if bad:
        raise EdgeKDError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    base_cfg = load_config(a.config, a.overrides)  # validates the base overrides once, up front
    out = Path(a.out)
    base = ["--config", str(a.config), *a.overrides]
    execute = _executor(a, out, base, base_cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    cells = plan(a.datasets or [base_cfg.data.root], a.fractions, a.methods, a.draws, parse_params(a.param))
    for c in cells:  # every cell's override set must be valid before hours of training start
        try:
            load_config(a.config, [*a.overrides, *c.overrides(out, base_cfg.seed)])
        except EdgeKDError as e:
            raise EdgeKDError(f"cell {c.run_dir(out)} (no cell was launched): {e}") from None
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
    # started with other settings, or finished without its results and no checkpoint left: trains from scratch
    restart = [c for c in todo if c in stale or _finished_without_results(RunDir(c.run_dir(out)))]
    for c in restart:
        RunDir(c.run_dir(out)).move_aside()
    print(f"sweep: {len(cells)} cells, {len(done)} already done, {len(todo)} to run"
          + (f" ({len(restart)} trained again from scratch, the old runs moved aside to *.old-<time>)"
             if restart else "")
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
