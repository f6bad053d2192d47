"""The run directory: every file the trainer writes, named in one place (layout: DEVELOPERS.md).

    config.yaml                   the resolved TrainConfig
    data/train.json test.json     manifests (written by `edgekd.data.prepare_data`), data/val.json here
    metrics.csv                   one row per epoch
    checkpoints/epoch_NNNN/       accelerate save_state (S, teacher, optimizer, RNG), trainer_state.json
                                  (progress, LR schedule), aux.safetensors (S') + a COMPLETE marker (resume)
    STEM.safetensors + STEM.json  a network and its StudentCard (model, best, aux, teacher)
    results.json                  the test metrics and run facts
    .lock                         pid + host of the process writing the folder (while it runs)

The trainer decides what to write and when; this module knows where and how, and guards the
folder: a folder holding a run is only continued (`resume`) or moved aside (`overwrite`), never
trained over, and one process writes it at a time. A resume reads nothing but safetensors, JSON
and plain-data `torch.load(weights_only=True)` files, so a planted pickle cannot run code.
Checkpoint methods are collective (every rank calls them); the others are called on the main process.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import pickle
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import load as plain_load
from safetensors.torch import load_model, save_model
from torch import nn

from edgekd.config import TrainConfig, save_config
from edgekd.data import Manifest
from edgekd.errors import EdgeKDError
from edgekd.models import save_student
from edgekd.shared.card import StudentCard

# aux_distance: ||theta_S' - theta_S|| / ||theta_S|| at the epoch's end (EMA methods; empty for others)
METRIC_FIELDS = ["epoch", "step", "lr", "train_loss", "train_ce", "train_kd", "aux_distance", "val_accuracy",
                 "val_macro_f1", "epoch_seconds"]
TEST_MANIFEST = "data/test.json"  # relative to the run directory, as the cards record it
RUN_FILES = ("config.yaml", "data", "metrics.csv", "checkpoints", "model.safetensors", "results.json")
LOCK = ".lock"
STATE_FILE, AUX_FILE = "trainer_state.json", "aux.safetensors"  # in a checkpoint, beside accelerate's files
# a write that fails with less than this free is a full disk, whatever the library called it (torch.save
# says "PytorchStreamWriter failed writing file", safetensors "IoError"): reported as ENOSPC, not a crash
LOW_DISK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class RunDir:
    path: Path

    def write_config(self, cfg: TrainConfig) -> None:
        save_config(cfg, self.path / "config.yaml")

    def write_manifest(self, part: str, manifest: Manifest) -> None:
        manifest.save(self.path / "data" / f"{part}.json")

    def write_metrics_row(self, row: dict[str, Any], keep_until: int | None = None) -> None:
        """Append one epoch; `keep_until` first drops rows past a resumed epoch (no duplicates)."""
        path = self.path / "metrics.csv"
        rows = []
        if path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if keep_until is None or int(r["epoch"]) <= keep_until]
        rows.append({k: row.get(k, "") for k in METRIC_FIELDS})
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)
        write_atomic(path, text.getvalue())

    def latest_checkpoint(self) -> Path | None:
        """Newest `checkpoints/epoch_NNNN` with its COMPLETE marker (a run killed mid-save is skipped)."""
        done = self._complete_checkpoints()
        return done[-1] if done else None

    def save_checkpoint(self, accelerator: Accelerator, epoch: int, keep: int, state: dict[str, Any],
                        aux: nn.Module | None) -> None:
        """`accelerator.save_state` (S, a teacher, optimizers, RNG) and, instead of accelerate's pickled custom
        objects, the trainer's `state` as JSON and S' as safetensors; the COMPLETE marker last."""
        path = self.path / "checkpoints" / f"epoch_{epoch:04d}"
        if accelerator.is_main_process:
            (path / "COMPLETE").unlink(missing_ok=True)  # never trust a half-overwritten checkpoint
        accelerator.wait_for_everyone()
        with disk_errors(path):
            accelerator.save_state(str(path))
            if accelerator.is_main_process:
                write_atomic(path / STATE_FILE, json.dumps(state, indent=1) + "\n")
                if aux is not None:
                    save_model(aux, str(path / AUX_FILE))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (path / "COMPLETE").write_text(f"{epoch}\n")
            done = self._complete_checkpoints()
            for old in done[: max(0, len(done) - max(1, keep))]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def load_checkpoint(self, accelerator: Accelerator, path: Path, aux: nn.Module | None) -> dict[str, Any]:
        """Restore what `save_checkpoint` wrote (every rank); returns the trainer's state."""
        check_plain_data(path)
        accelerator.load_state(str(path))
        if aux is not None:
            load_model(aux, str(path / AUX_FILE), device=str(accelerator.device))
        return json.loads((path / STATE_FILE).read_text())

    def _complete_checkpoints(self) -> list[Path]:
        return sorted(p.parent for p in (self.path / "checkpoints").glob("epoch_*/COMPLETE"))

    def save_network(self, model: nn.Module, stem: str, card: StudentCard) -> StudentCard:
        """`STEM.safetensors` and its card (with the weights' sha256 filled in); returns the card as written."""
        with disk_errors(self.path):
            return StudentCard.load(save_student(model, self.path / f"{stem}.safetensors", card))

    def write_results(self, results: dict[str, Any]) -> None:
        write_atomic(self.path / "results.json", json.dumps(results, indent=2) + "\n")

    # ---- who may write the folder

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in RUN_FILES)

    def resumable(self) -> bool:
        """Holds a run that a resume continues: from its last complete checkpoint, or from epoch 0 when it
        stopped before its first one (no networks saved yet)."""
        return self.holds_run() and (self.latest_checkpoint() is not None
                                     or not (self.path / "model.safetensors").exists())

    @contextmanager
    def writing(self, accelerator: Accelerator, resume: bool, overwrite: bool) -> Iterator[None]:
        """Claim the folder for this run (`claim`, on the main process) and hold its lock until the run ends,
        fails or is stopped; a killed run's lock is taken over by the next one (its pid is gone)."""
        if accelerator.is_main_process:
            self.claim(resume, overwrite)
        accelerator.wait_for_everyone()
        try:
            yield
        finally:
            if accelerator.is_main_process:
                RunLock(self.path / LOCK).release()

    def claim(self, resume: bool, overwrite: bool) -> None:
        """Refuse a folder another process writes; continue (`resume`), move aside (`overwrite`) or refuse the
        run a folder holds; then lock it. Nothing in a refused folder is touched."""
        if resume and overwrite:
            raise EdgeKDError("--resume and --overwrite contradict each other; fix: give one of them")
        lock = RunLock(self.path / LOCK)
        dead = lock.dead_owner()  # refuses a folder that a live process writes
        if resume and not self.resumable():
            raise EdgeKDError(self._why_not_resumable())
        found = [] if resume else [n for n in RUN_FILES if (self.path / n).exists()]
        if found and not overwrite:
            raise EdgeKDError(f"{self.path} holds a run ({', '.join(found)}); fix: add --resume to continue it, or "
                              f"--overwrite to move it aside to {self.path.name}.old-<time>/ and start again")
        if dead is not None:
            print(f"{lock.path}: taking over the lock of pid {dead}, which is no longer running (killed?)")
            lock.path.unlink(missing_ok=True)
        if found:
            print(f"--overwrite: moved the run in {self.path} aside to {self.move_aside()}")
        lock.acquire()

    def _why_not_resumable(self) -> str:
        if not self.holds_run():
            return (f"{self.path} holds no run to resume (no {', '.join(RUN_FILES)}); fix: check run_dir "
                    "(a typo?), or drop --resume to start a new run there")
        return (f"{self.path} holds a finished run whose checkpoints are gone, so there is nothing to resume; "
                "fix: --overwrite to move it aside and train again, or train into a new run_dir")

    def move_aside(self) -> Path:
        """Rename the folder to `NAME.old-YYYYmmdd-HHMMSS[-N]` beside it: a rerun never deletes a run."""
        lock = RunLock(self.path / LOCK)
        if lock.dead_owner() is not None:  # a folder that a live process writes stays where it is
            lock.path.unlink(missing_ok=True)
        stamp, n = time.strftime("%Y%m%d-%H%M%S"), 0
        while (dest := self.path.with_name(f"{self.path.name}.old-{stamp}" + (f"-{n}" if n else ""))).exists():
            n += 1
        os.rename(self.path, dest)
        return dest


@dataclass(frozen=True)
class RunLock:
    """`RUN/.lock`: JSON pid + host of the one process writing the folder, created with O_EXCL."""

    path: Path

    def owner(self) -> tuple[int, str] | None:
        try:
            d = json.loads(self.path.read_text())
            return int(d["pid"]), str(d["host"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            raise EdgeKDError(f"{self.path} is not a readable lock; fix: if no edgekd writes {self.path.parent}, "
                              f"delete {self.path}") from None

    def dead_owner(self) -> int | None:
        """The pid of a lock whose process is gone (killed) on this host, None without a lock; raises for a
        live owner, or one on another host (whose pids this host cannot check)."""
        owner = self.owner()
        if owner is None:
            return None
        pid, host = owner
        if host != socket.gethostname() or _alive(pid):
            raise EdgeKDError(f"{self.path.parent} is being written by pid {pid} on {host} (its {LOCK}); fix: wait "
                              f"for that run to end or use another run_dir; if it is not running, delete {self.path}")
        return pid

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise EdgeKDError(f"{self.path.parent} was claimed by another process a moment ago ({self.path}); "
                              "fix: wait for that run to end or use another run_dir") from None
        with os.fdopen(fd, "w") as f:  # one small write: a reader sees all of it or an empty file
            f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}))

    def release(self) -> None:
        """Remove the lock if this process holds it (a lock someone else took over is theirs)."""
        try:
            mine = self.owner() == (os.getpid(), socket.gethostname())
        except EdgeKDError:
            mine = False
        if mine:
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether `pid` runs here; a zombie (killed, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): trust kill(0)
        return True


# ---------------------------------------------------------------------------------------------
# plain-data checkpoints and writes that never leave half a file


def check_plain_data(checkpoint: Path) -> None:
    """Refuse a checkpoint holding anything a resume would have to unpickle: accelerate's custom objects
    (`custom_checkpoint_N.pkl`, loaded with `weights_only=False`) and any pickle-format file that
    `torch.load(weights_only=True)` refuses, read here exactly as accelerate will read it, before it does."""
    for f in sorted(checkpoint.iterdir()):
        if f.name.startswith("custom_checkpoint_"):
            raise EdgeKDError(f"{f} is a pickled object state, which edgekd does not load (a resume would run any "
                              "code in it; an older edgekd wrote such files); fix: train again (--overwrite)")
        if f.suffix in (".bin", ".pkl", ".pt", ".pth"):
            try:
                plain_load(f, map_location="cpu")
            except pickle.UnpicklingError:
                raise EdgeKDError(f"{f} holds more than tensors and numbers (a pickle that would run code when "
                                  "loaded); edgekd does not load it; fix: delete the file, or train again "
                                  "(--overwrite)") from None


def write_atomic(path: Path, text: str) -> None:
    """Temp file + rename: a kill or a full disk leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """A write that fails on a (nearly) full disk raises ENOSPC, so `run_verb` says "no space left" in one
    line (exit 2) instead of showing a library's error as an internal one."""
    try:
        yield
    except OSError:
        raise
    except Exception as e:
        where = next(p for p in (path, *path.parents) if p.exists())
        if shutil.disk_usage(where).free >= LOW_DISK_BYTES:
            raise
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
