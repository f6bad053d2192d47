"""`edgekd explain --run RUN`: S, S' and the teacher side by side on the same images.

Why side by side: the explainable-KD line of work judges a distilled student by whether it
looks where its teacher looks. A run directory holds S (`model.safetensors`), S' for the
methods that keep one (`aux.safetensors`) and a teacher the method trained (`teacher.safetensors`).
A teacher that only donates weights (`Method.teacher_donates_weights`) is never trained on the
data, so it is rebuilt from `config.yaml` and explains its own top-1 ImageNet class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgekd.data import load_image
from edgekd.errors import EdgeKDError
from edgekd.evaluation import link_gallery
from edgekd.explain.cam import CamConfig, compute_cams
from edgekd.shared.card import StudentCard
from edgekd.shared.logs import folded_logs
from edgekd.shared.preprocess import PreprocessConfig, preprocess_numpy
from edgekd.shared.render import GalleryRow, Panel, denormalize, write_gallery

ROLES = ("student", "aux", "teacher")
_LABELS = {"student": "S", "aux": "S' (aux)", "teacher": "teacher"}


@dataclass
class Explainee:
    label: str
    model: nn.Module
    classes: list[str] | None  # None: class indices (ImageNet names for a 1000-class teacher)


@dataclass
class ExplainRequest:
    run: Path
    images: list[str]
    out: Path
    cam: CamConfig = field(default_factory=CamConfig)
    roles: tuple[str, ...] = ROLES
    batch_size: int = 8


def class_name(classes: list[str] | None, idx: int, num_classes: int) -> str:
    if classes is not None:
        return classes[idx]
    if num_classes == 1000:
        from timm.data import ImageNetInfo

        return "imagenet: " + ImageNetInfo().index_to_description(idx).split(",")[0]
    return f"class {idx}"


def _teacher_from_config(run: Path) -> tuple[Explainee | None, str | None]:
    """(the selection teacher as the run built it, a note for the gallery); (None, why) if none."""
    from edgekd.config import load_config
    from edgekd.methods import get_method
    from edgekd.models import load_teacher

    cfg = load_config(run / "config.yaml")
    m = cfg.model
    if not get_method(cfg.method.name).teacher_donates_weights:
        return None, f"method {cfg.method.name!r} has no teacher"
    try:
        t = load_teacher(m.teacher, weights=m.teacher_weights, pretrained=m.teacher_pretrained, **m.teacher_kwargs)
    except EdgeKDError as e:
        return None, f"teacher {m.teacher} not shown: {e}"
    return Explainee("teacher", t, None), (f"teacher = {m.teacher} as built for weight selection (never trained on "
                                           "this data): its map explains its own top-1 ImageNet class")


def run_models(run: Path, roles: tuple[str, ...] = ROLES) -> tuple[list[Explainee], list[str]]:
    """The run's models for `roles`, in that order, and notes on any that are missing."""
    from edgekd.models import load_student

    if not (run / "model.safetensors").is_file():
        raise EdgeKDError(f"{run} has no model.safetensors; fix: pass a run directory written by `edgekd train`")
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise EdgeKDError(f"unknown --models {', '.join(bad)}; fix: choose from {', '.join(ROLES)}")
    files = {"student": "model.safetensors", "aux": "aux.safetensors", "teacher": "teacher.safetensors"}
    out, notes = [], []
    for role in roles:
        path = run / files[role]
        if path.is_file():
            model, card = load_student(path)
            out.append(Explainee(_LABELS[role], model, list(card.classes)))
        elif role == "teacher":
            t, note = _teacher_from_config(run)
            out += [t] if t else []
            notes += [note] if note else []
        else:
            notes.append(f"{files[role]} not in the run (S' is saved by the methods that keep one)")
    return out, notes


def _panels(models: list[Explainee], x: np.ndarray, cfg: CamConfig, bar: tqdm) -> list[list[Panel]]:
    """Per image, one panel per model; `bar` counts the maps."""
    xt = torch.from_numpy(x)
    per_model = []
    for m in models:
        per_model.append((m, compute_cams(m.model, xt, cfg)))
        bar.update(len(x))
    return [[Panel(m.label, class_name(m.classes, r.targets[i], r.probs.shape[1]), float(r.probs[i, r.targets[i]]),
                   r.maps[i]) for m, r in per_model] for i in range(len(x))]


def _rows(models: list[Explainee], req: ExplainRequest, pp: PreprocessConfig) -> list[GalleryRow]:
    """Every image through every model, under one bar over the maps."""
    rows: list[GalleryRow] = []
    with tqdm(total=len(req.images) * len(models), desc=f"explain ({req.cam.method})", unit="map") as bar:
        for i in range(0, len(req.images), req.batch_size):
            paths = req.images[i : i + req.batch_size]
            x = np.stack([preprocess_numpy(load_image(p), pp) for p in paths]).astype(np.float32)
            for path, xi, panels in zip(paths, x, _panels(models, x, req.cam, bar)):
                rows.append(GalleryRow(path, denormalize(xi, pp.mean, pp.std), panels))
    return rows


def explain_run(req: ExplainRequest) -> Path:
    """Maps for every image and model, written as a gallery under req.out; returns gallery.md."""
    if not (req.run / "model.json").is_file():
        raise EdgeKDError(f"{req.run} has no model.json; fix: pass a run directory written by `edgekd train`")
    card = StudentCard.load(req.run / "model.json")
    pp = PreprocessConfig.from_dict(card.preprocess)
    with folded_logs(req.out / "explain.log"):  # timm's and the CAM library's output; their warnings still show
        models, notes = run_models(req.run, req.roles)
        rows = _rows(models, req, pp)
    notes = [f"Method: {req.cam.method} (pytorch-grad-cam); each map explains that model's own top-1 class.",
             f"Run: `{req.run}` ({card.architecture}, method {card.method or '?'}).", *notes]
    gallery = write_gallery(rows, req.out, f"What the models look at ({req.cam.method})", [f"- {n}" for n in notes])
    link_gallery(req.run, gallery, req.cam.method)
    return gallery
