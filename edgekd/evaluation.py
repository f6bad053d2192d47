"""Evaluation on the test split: accuracy, macro-F1, per-class P/R/F1, confusion matrix, model card.

`predict` gathers predictions across ranks with `accelerator.gather_for_metrics`, which drops
the samples the distributed sampler duplicated to even out the last batch, so a 2-process
evaluation scores exactly the test manifest, like a 1-process one. `evaluate_run` re-scores a
finished run directory from its saved weights on one process (no training code needed).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from edgekd.config import TrainConfig
    from edgekd.shared.card import StudentCard


@torch.no_grad()
def predict(model: nn.Module, loader, accelerator=None) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, true labels) over the whole loader, in loader order."""
    was_training = model.training
    model.eval()
    preds, targets = [], []
    for batch in loader:
        x, y = batch[0], batch[1]
        if accelerator is None:
            logits = model(x)
        else:
            with accelerator.autocast():
                logits = model(x)
        p = logits.argmax(dim=-1)
        if accelerator is not None:
            p, y = accelerator.gather_for_metrics((p, y))
        preds.append(p.cpu())
        targets.append(y.cpu())
    model.train(was_training)
    if not preds:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return torch.cat(preds).numpy(), torch.cat(targets).numpy()


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def save_confusion_matrix(cm: list[list[int]], classes: list[str], path: str | Path, title: str = "") -> None:
    """Row-normalized heat map with raw counts in the cells (matplotlib Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(cm, dtype=float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_model_card(run_dir: str | Path, cfg: TrainConfig, results: dict[str, Any], card: StudentCard) -> Path:
    """A short MODEL_CARD.md: what the model is, what it was trained on, how well it does."""
    run_dir = Path(run_dir)
    test = results["test"]
    m, d, o, meth = cfg.model, cfg.data, cfg.optim, cfg.method
    rows = "\n".join(
        f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
        for c, v in test["per_class"].items()
    )
    standin = " (Fashion-MNIST is a STAND-IN dataset, not medical data)" if "fashion" in str(d.root).lower() else ""
    text = f"""# Model card: {card.architecture} ({meth.name})

Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by edgekd {card.edgekd_version}.

## Model
- Architecture: `{card.architecture}` ({results.get('num_params', '?')} parameters), input {m.image_size}x{m.image_size}, {len(card.classes)} classes.
- Initialization: method `{meth.name}`; teacher `{m.teacher}` (weights: {m.teacher_weights or 'timm hub'}), selection strategy `{m.strategy}`.
- Self-distillation: alpha {meth.alpha}, beta {meth.beta}, tau {meth.tau} (used by ours* and kd only).
- Weights: `model.safetensors` (final epoch, sha256 `{card.weights_sha256[:16]}...`); `best.safetensors` (epoch {results.get('best', {}).get('epoch', '?')}, chosen by {results.get('best', {}).get('selected_by', 'validation accuracy')}).

## Data
- Dataset: `{d.root}`{standin}; split `{d.split}` (test size {d.test_size}, seed {d.seed}).
- Training subset: fraction {d.fraction}, draw {d.draw}: {results['n_train']} images. Test: {test['n']} images (`{card.test_manifest}`).

## Training
- {o.epochs} epochs, AdamW lr {o.lr} (cosine to {o.min_lr}, {o.warmup_epochs} warm-up epochs), weight decay {o.weight_decay}, batch {o.batch_size} x {results.get('world_size', 1)} process(es), mixed precision `{cfg.mixed_precision}`, seed {cfg.seed}.
- Training time: {results.get('train_seconds', 0):.0f} s on {results.get('device', '?')}.

## Results (test split, final weights)
- Accuracy **{test['accuracy']:.4f}**, macro-F1 **{test['macro_f1']:.4f}**.

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}

Confusion matrix: `confusion_matrix.png`.

## Limitations
- Trained on {results['n_train']} images; accuracy on other scanners, sites or populations is unknown.
- Not a medical device. Validate on local data before any clinical use.

{EXPLAIN_HEADING}
- No gallery yet: `edgekd explain --run RUN --sample 8` shows where S, S' and the teacher look and links it here.
"""
    path = run_dir / "MODEL_CARD.md"
    path.write_text(text)
    return path


EXPLAIN_HEADING = "## Explanations"


def link_gallery(run_dir: str | Path, gallery: Path, method: str) -> None:
    """Point the card's Explanations section at an `edgekd explain` gallery (made after training)."""
    card = Path(run_dir) / "MODEL_CARD.md"
    if not card.is_file():
        return
    body = card.read_text().split(f"\n{EXPLAIN_HEADING}\n")[0].rstrip("\n")
    rel = os.path.relpath(gallery, run_dir)
    card.write_text(f"{body}\n\n{EXPLAIN_HEADING}\n- Where the models look ({method}): [{rel}]({rel}).\n")


def evaluate_run(run_dir: str | Path, weights: str = "model.safetensors", batch_size: int = 64) -> dict[str, Any]:
    """Re-score a run's saved weights on its test manifest in this (single) process."""
    from edgekd.data.manifest import Manifest
    from edgekd.data.torchdata import ImageDataset, eval_transform
    from edgekd.models import load_student
    from edgekd.rundir import TEST_MANIFEST
    from edgekd.shared.preprocess import PreprocessConfig

    run_dir = Path(run_dir)
    model, card = load_student(run_dir / weights)
    manifest = Manifest.load(run_dir / (card.test_manifest or TEST_MANIFEST))
    ds = ImageDataset(manifest, None, eval_transform(PreprocessConfig.from_dict(card.preprocess)))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    y_pred, y_true = predict(model, loader)
    return compute_metrics(y_true, y_pred, list(card.classes))


def main(argv: list[str] | None = None) -> int:
    """`python -m edgekd.evaluation RUN [WEIGHTS]`: print the re-scored metrics as JSON."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m edgekd.evaluation", description="re-score a run directory's saved weights")
    p.add_argument("run_dir")
    p.add_argument("weights", nargs="?", default="model.safetensors")
    a = p.parse_args(argv)
    out = evaluate_run(a.run_dir, a.weights)
    print(json.dumps({k: v for k, v in out.items() if k != "per_class"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
