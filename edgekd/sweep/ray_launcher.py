"""`edgekd sweep --launcher ray`: every sweep cell is a Ray task, so a sweep spreads over a cluster.

Ray schedules the cells (each task asks for `--cpus-per-cell` / `--gpus-per-cell`), retries a
cell whose worker died or whose training failed (`--retries`), and the driver gathers results
as they finish into the same table as the other launchers (`edgekd.sweep.table`). Inside a cell the
training is the ordinary launch: `python -m edgekd.train`, or `accelerate launch --multi_gpu`
when a cell gets more than one GPU. A scheduler of our own would re-implement all of this.

Cells read and write their run directories directly, so `--out` (and the data) must be on a
path every node sees at the same place (a shared file system such as NFS or Lustre).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.errors import EdgeKDError

if TYPE_CHECKING:
    from edgekd.sweep.plan import Cell


@dataclass
class RayOptions:
    address: str | None = None  # None: a Ray already running on this machine, else a new local one
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    retries: int = 2  # extra attempts after the first, for crashes and for training errors

    def cell_launcher(self) -> tuple[str, int]:
        """(launcher, processes) used inside a cell: Accelerate's multi-GPU launch above one GPU."""
        gpus = int(self.gpus_per_cell)
        return ("accelerate", gpus) if gpus > 1 else ("subprocess", 1)


def import_ray() -> Any:
    """Ray is an optional extra; say how to get it instead of an ImportError deep in a sweep."""
    try:
        import ray
    except ImportError as e:
        raise EdgeKDError("--launcher ray needs Ray: pip install 'edgekd[cluster]'") from e
    return ray


def _attempt(runner: Callable[[Cell], None], cell: Cell, run_dir: str, cwd: str) -> None:
    """One try at a cell on a Ray worker.

    Relative paths (config, data) keep the meaning they had for the driver, and each attempt is
    logged in the run directory, so a retried cell shows where and how often it ran.
    """
    if not os.path.isdir(cwd):
        raise EdgeKDError(f"{socket.gethostname()}: the driver's directory {cwd} does not exist here; "
                          "run the sweep from a shared file system that every node mounts at the same path")
    os.chdir(cwd)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / "attempts.log", "a") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} host={socket.gethostname()} pid={os.getpid()}\n")
    runner(cell)


def _short(error: Exception) -> str:
    """A Ray error carries the remote traceback; the table keeps its last line."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1].strip() if lines else ''}"


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at `address` (or a local one); True if this call made the connection."""
    if ray.is_initialized():  # the caller already chose a cluster (e.g. a test's local Ray)
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    except ConnectionError as e:
        raise EdgeKDError(f"cannot reach a Ray cluster at {address}: {e}. Start one with `ray start --head` "
                          "and pass the address it prints to --ray-address") from e
    return True


def run_cells(cells: list[Cell], runner: Callable[[Cell], None], out: Path,
              opts: RayOptions) -> Iterator[tuple[Cell, str | None]]:
    """Submit every cell at once; yield (cell, None) or (cell, error) as each finishes for good."""
    ray = import_ray()
    connected = _connect(ray, opts.address)
    try:
        remote = ray.remote(_attempt).options(num_cpus=opts.cpus_per_cell, num_gpus=opts.gpus_per_cell,
                                              max_retries=opts.retries, retry_exceptions=True)
        cwd = os.getcwd()
        pending = {remote.remote(runner, c, str(c.run_dir(out)), cwd): c for c in cells}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            try:
                ray.get(ready[0])
            except ray.exceptions.RayError as e:  # retries used up: the sweep records it and goes on
                yield cell, f"{_short(e)} (after {opts.retries + 1} attempts)"
            else:
                yield cell, None
    finally:
        if connected:
            ray.shutdown()
