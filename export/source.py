"""The export input: a trainer run directory (or any safetensors student + its sidecar).

Why a module: export and verify both need "the PyTorch model, its sidecar, its training and
test manifests" resolved the same way, and a PyTorch-eager runner with the same
`predict(batch)` interface as the artifact runners (the reference every artifact is compared
to, and the speed-up baseline). This is the only export module that imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgeKDError
from edgekd.export import contract
from edgekd.export.onnx_export import with_temperature
from edgekd.shared.card import StudentCard, card_path


@dataclass
class RunSource:
    weights: Path
    meta: StudentCard
    train_manifest: Path | None
    test_manifest: Path | None
    val_manifest: Path | None = None  # data/val.json: held-out training-split images (temperature, best.*)

    @property
    def architecture(self) -> str:
        return self.meta.architecture


def resolve_run(run: str | Path, weights: str | None = None) -> RunSource:
    """RUN_DIR (model.safetensors + model.json + data/*.json) or a .safetensors file."""
    run = Path(run)
    if run.suffix == ".safetensors":
        w, root = run, run.parent
    else:
        if not run.is_dir():
            raise EdgeKDError(f"--run {run}: no such run directory; pass the trainer's output folder or a .safetensors file")
        w, root = run / (weights or "model.safetensors"), run
    side = card_path(w)
    if not w.exists() or not side.exists():
        raise EdgeKDError(f"{w} or its card {side.name} is missing; export needs both (written by `edgekd train`)")
    meta = StudentCard.load(side)
    if not meta.classes or meta.preprocess is None:
        raise EdgeKDError(f"card {side} lacks the class names or the preprocessing; fix: re-save the model with "
                          "edgekd.models.save_student")
    test = root / (meta.test_manifest or "data/test.json")
    train, val = root / "data" / "train.json", root / "data" / "val.json"
    return RunSource(w, meta, train if train.exists() else None, test if test.exists() else None,
                     val if val.exists() else None)


class TorchRunner:
    """PyTorch eager FP32 under inference_mode: the reference and the speed-up baseline.

    `predict` divides the logits by the card's temperature exactly as the exported graph does, so
    verify compares calibrated with calibrated; `model` stays the bare student (what gets exported)."""

    runtime = "pytorch"

    def __init__(self, weights: Path, threads: int | None = 2):
        import torch

        if threads:
            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        self.model, self.card = contract.load_student(weights)
        self.model.eval()
        self.calibrated = with_temperature(self.model, self.card.temperature)
        self.load_seconds = time.perf_counter() - t0
        self.path, self.fixed_batch = weights, None
        self.threads = threads

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.calibrated(torch.from_numpy(np.ascontiguousarray(batch, np.float32))).float().numpy()

    def info(self) -> dict[str, Any]:
        import torch

        return {"runtime": "pytorch", "path": str(self.path), "load_seconds": round(self.load_seconds, 4),
                "fixed_batch": None, "version": torch.__version__, "num_threads": torch.get_num_threads()}
