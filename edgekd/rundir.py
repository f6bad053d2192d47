"""The run directory: every file the trainer writes, named in one place (layout: DEVELOPERS.md).

    config.yaml                   the resolved TrainConfig
    data/train.json test.json     manifests (written by `edgekd.data.prepare_data`), data/val.json here
    metrics.csv                   one row per epoch
    checkpoints/epoch_NNNN/       accelerate save_state + a COMPLETE marker (resume)
    STEM.safetensors + STEM.json  a network and its StudentCard (model, best, aux, teacher)
    results.json                  the test metrics and run facts

The trainer decides what to write and when; this module knows where and how. Checkpoint
methods are collective (every rank calls them); the others are called on the main process.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch import nn

from edgekd.config import TrainConfig, save_config
from edgekd.data import Manifest
from edgekd.models import save_student
from edgekd.shared.card import StudentCard

METRIC_FIELDS = ["epoch", "step", "lr", "train_loss", "train_ce", "train_kd", "val_accuracy", "val_macro_f1",
                 "epoch_seconds"]
TEST_MANIFEST = "data/test.json"  # relative to the run directory, as the cards record it


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
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def latest_checkpoint(self) -> Path | None:
        """Newest `checkpoints/epoch_NNNN` with its COMPLETE marker (a run killed mid-save is skipped)."""
        done = self._complete_checkpoints()
        return done[-1] if done else None

    def save_checkpoint(self, accelerator: Accelerator, epoch: int, keep: int) -> None:
        path = self.path / "checkpoints" / f"epoch_{epoch:04d}"
        if accelerator.is_main_process:
            (path / "COMPLETE").unlink(missing_ok=True)  # never trust a half-overwritten checkpoint
        accelerator.wait_for_everyone()
        accelerator.save_state(str(path))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (path / "COMPLETE").write_text(f"{epoch}\n")
            done = self._complete_checkpoints()
            for old in done[: max(0, len(done) - max(1, keep))]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def _complete_checkpoints(self) -> list[Path]:
        return sorted(p.parent for p in (self.path / "checkpoints").glob("epoch_*/COMPLETE"))

    def forget_progress(self) -> None:
        """A fresh run in an old directory: no stale epochs or checkpoints."""
        (self.path / "metrics.csv").unlink(missing_ok=True)
        shutil.rmtree(self.path / "checkpoints", ignore_errors=True)

    def save_network(self, model: nn.Module, stem: str, card: StudentCard) -> StudentCard:
        """`STEM.safetensors` and its card (with the weights' sha256 filled in); returns the card as written."""
        return StudentCard.load(save_student(model, self.path / f"{stem}.safetensors", card))

    def write_results(self, results: dict[str, Any]) -> None:
        (self.path / "results.json").write_text(json.dumps(results, indent=2) + "\n")
