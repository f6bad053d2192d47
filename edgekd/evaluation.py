"""Evaluation on the test split: accuracy, macro-F1, the clinical metrics with intervals, temperature
scaling, the three figures and the model card.

`predict_logits` gathers logits across ranks with `accelerator.gather_for_metrics`, which drops
the samples the distributed sampler duplicated to even out the last batch, so a 2-process
evaluation scores exactly the test manifest, like a 1-process one. `evaluate_run` re-scores a
finished run directory from its saved weights on one process (no training code needed). The
statistics themselves live in `edgekd.shared.clinical`, which `edgekd verify` uses for every artifact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from edgekd.config import TrainConfig
    from edgekd.shared.card import StudentCard
    from edgekd.shared.clinical.calibration import CalibrationReport
    from edgekd.shared.clinical.metrics import ClinicalMetrics
    from edgekd.shared.clinical.subgroups import SubgroupReport


@torch.no_grad()
def predict_logits(model: nn.Module, loader, accelerator=None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, K) float32, true labels) over the whole loader, in loader order."""
    was_training = model.training
    model.eval()
    logits, targets = [], []
    for batch in loader:
        x, y = batch[0], batch[1]
        if accelerator is None:
            z = model(x).float()
        else:
            with accelerator.autocast():
                z = model(x).float()
            z, y = accelerator.gather_for_metrics((z, y))
        logits.append(z.cpu())
        targets.append(y.cpu())
    model.train(was_training)
    if not logits:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def predict(model: nn.Module, loader, accelerator=None) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels, true labels): the argmax of `predict_logits`."""
    logits, y = predict_logits(model, loader, accelerator)
    return (logits.argmax(1) if len(y) else np.zeros(0, dtype=np.int64)), y


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


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling of one saved network: its report (T fitted on the validation images, scores on
    the test split), or why there is none."""

    report: CalibrationReport | None
    skipped: str = ""  # why `report` is None

    @property
    def temperature(self) -> float:
        return self.report.temperature if self.report is not None else 1.0

    def card_entry(self) -> dict[str, Any] | None:
        """`StudentCard.calibration`: what the exporter divides the logits by."""
        return self.report.to_dict() if self.report is not None else None

    def to_dict(self) -> dict[str, Any]:
        """results.json: the report, or why there is none."""
        return self.report.to_dict() if self.report is not None else {"skipped": self.skipped}

    def summary(self) -> str:
        """One line for the console: T and the test ECE before -> after, or why skipped."""
        if self.report is None:
            return f"skipped ({self.skipped})"
        return f"T={self.temperature:.3f}, test ECE {self.report.before.ece:.3f} -> {self.report.after.ece:.3f}"

    def to_markdown(self) -> str:
        if self.report is None:
            return f"Skipped: {self.skipped}. Probabilities are the plain softmax of the logits (T = 1).\n"
        return (self.report.to_markdown() + "\nFitted on the validation images (training split, outside the "
                "training subset), scored on the test split. The exported artifacts divide their logits by T "
                "in the graph, so their softmax is calibrated too.\n")


def calibration_skipped(cfg: TrainConfig, has_val: bool) -> str:
    """Why the run's networks get no temperature scaling ('' when they do). T is never fitted on the
    test split: that would make the calibration figures reported on it optimistic."""
    if cfg.calibration == "none":
        return "calibration=none"
    if has_val:
        return ""
    if not cfg.val_limit:
        return "val_limit is null, so there are no held-out labelled images to fit T on; set val_limit to calibrate"
    return ("the training subset is the whole training split (data.fraction=1.0 with data.val_size=0), so no "
            "held-out labelled images remain to fit T on; set data.val_size (e.g. 0.1) to hold some out")


def fit_calibration(model: nn.Module, val_loader, test: tuple[np.ndarray, np.ndarray], accelerator=None
                    ) -> Calibration:
    """T fitted on `val_loader` (labelled images `model` never trained on), ECE/Brier/NLL before and
    after on `test` (the model's test logits and labels)."""
    from edgekd.shared.clinical.calibration import calibrate

    return Calibration(calibrate(*predict_logits(model, val_loader, accelerator), *test))


@dataclass(frozen=True)
class StudentEvaluation:
    """S on the test split: what results.json, the figures and MODEL_CARD.md report."""

    labels: np.ndarray
    logits: np.ndarray
    probs: np.ndarray  # softmax(logits / T): what the exported artifacts output
    calibration: Calibration
    clinical: ClinicalMetrics  # from `probs`
    subgroups: SubgroupReport | None = None  # per attribute column of the test manifest; None without any


def evaluate_student(labels: np.ndarray, logits: np.ndarray, classes: list[str], calibration: Calibration,
                     attributes: dict[str, list[str | None]] | None = None) -> StudentEvaluation:
    """Per-class sensitivity, specificity, PPV, NPV, F1, AUC with stratified-bootstrap 95 % intervals
    (B=1000, seed 0, as verify's gate) from S's calibrated test probabilities; with the test manifest's
    `attributes` (site, scanner ...), the same per subgroup, flagged where a class's sensitivity trails."""
    from edgekd.shared.probs import softmax
    from edgekd.shared.clinical.metrics import clinical_metrics
    from edgekd.shared.clinical.subgroups import subgroup_metrics

    probs = softmax(logits, calibration.temperature)
    subgroups = subgroup_metrics(labels, probs, classes, attributes) if attributes else None
    return StudentEvaluation(labels, logits, probs, calibration, clinical_metrics(labels, classes, y_prob=probs),
                             subgroups)


CONFUSION_PNG, ROC_PNG, RELIABILITY_PNG = "confusion_matrix.png", "roc_curves.png", "reliability.png"


def save_figures(run_dir: str | Path, ev: StudentEvaluation, classes: list[str], name: str) -> None:
    """The confusion matrix normalised by row, ROC curves per class, the reliability diagram before and
    after temperature scaling; `name` (model and method) heads each."""
    from edgekd.shared.clinical import plots
    from edgekd.shared.clinical.calibration import ECE_BINS
    from edgekd.shared.probs import softmax

    run_dir, probs = Path(run_dir), ev.probs
    plots.confusion_matrix_plot(ev.labels, probs.argmax(1), classes, run_dir / CONFUSION_PNG,
                                title=f"{name}\nconfusion matrix (rows sum to 1)")
    plots.roc_curves(ev.labels, probs, classes, run_dir / ROC_PNG, title=f"{name}\nROC, one class vs the rest")
    curves = {"before (T=1)": softmax(ev.logits)}
    if ev.calibration.report is not None:
        curves[f"after (T={ev.calibration.temperature:.2f})"] = probs
    plots.reliability_diagram(ev.labels, curves, run_dir / RELIABILITY_PNG,
                              title=f"{name}\nreliability ({ECE_BINS} bins)")


def write_model_card(run_dir: str | Path, cfg: TrainConfig, results: dict[str, Any], card: StudentCard,
                     ev: StudentEvaluation) -> Path:
    """A short MODEL_CARD.md: what the model is, what it was trained on, how well it does per class
    (with intervals) and how far its probabilities can be trusted."""
    run_dir = Path(run_dir)
    test = results["test"]
    m, d, o, meth = cfg.model, cfg.data, cfg.optim, cfg.method
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

Per class, one vs the rest (sensitivity = recall, PPV = precision), with 95 % intervals; AUCs from the
{'calibrated ' if ev.calibration.report is not None else ''}probabilities:

{ev.clinical.to_markdown()}
Confusion matrix normalised by row (each row is a true class, so the diagonal is its sensitivity):
[{CONFUSION_PNG}]({CONFUSION_PNG}). ROC curves per class: [{ROC_PNG}]({ROC_PNG}).

![confusion matrix]({CONFUSION_PNG}) ![ROC curves]({ROC_PNG})

{subgroup_section(ev)}## Calibration
{ev.calibration.to_markdown()}
Reliability diagram (accuracy against confidence, before and after temperature scaling): [{RELIABILITY_PNG}]({RELIABILITY_PNG}).

![reliability diagram]({RELIABILITY_PNG})

## Limitations
- Trained on {results['n_train']} images; accuracy on other scanners, sites or populations is unknown.
- Not a medical device. Validate on local data before any clinical use.

{EXPLAIN_HEADING}
- No gallery yet: `edgekd explain --run RUN --sample 8` shows where S, S' and the teacher look and links it here.
"""
    path = run_dir / "MODEL_CARD.md"
    path.write_text(text)
    return path


def subgroup_section(ev: StudentEvaluation) -> str:
    """The card's Subgroups section, or nothing when the test manifest has no attribute columns."""
    if ev.subgroups is None:
        return ""
    return ("## Subgroups\nPer-class metrics within each subgroup of the test split (attribute columns of its "
            "manifest), and each class's sensitivity against the rest of the test images:\n\n"
            f"{ev.subgroups.to_markdown()}\n")


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
