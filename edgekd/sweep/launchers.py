"""Local launchers: run one cell in this process, in a subprocess, or under `accelerate launch`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from edgekd.rundir import RunDir
from edgekd.sweep.plan import Cell

LAUNCHERS = ("inproc", "subprocess", "accelerate", "ray")


def _die_with_parent() -> None:
    """In the trainer child: stop when the sweep process (or Ray worker) running it is killed.

    Otherwise an orphaned trainer keeps writing into the run directory while the rerun of the
    sweep trains the same cell again.
    """
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def run_cell(cell: Cell, out: Path, base: list[str], seed: int, launcher: str, num_processes: int) -> None:
    """Train one cell into its run directory (raises on failure): a folder holding the cell's run resumes it
    (an interrupted cell continues from its last epoch), an empty one starts it."""
    run_dir = cell.run_dir(out)
    argv = [*base, *cell.overrides(out, seed), *(["resume=true"] if RunDir(run_dir).holds_run() else [])]
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


def run_local(cells: list[Cell], runner: Callable[[Cell], None]) -> Iterator[tuple[Cell, str | None]]:
    """One cell after another on this machine; yield (cell, None) or (cell, error) as each ends."""
    for c in cells:
        try:
            runner(c)
        except Exception as e:  # noqa: BLE001 - record, keep going; the table shows what finished
            yield c, f"{type(e).__name__}: {e}"
        else:
            yield c, None
