"""Overlays and galleries for saliency maps (torch-free: numpy + pillow only).

Why one module: the torch CAMs and the runtime occlusion maps must look the same to a
reader, so both render here. A gallery is `gallery.md` (renders on GitHub and in the model
card link), `gallery.png` (one contact sheet, for READMEs and slides), one overlay PNG per
image and model, and `explanations.json` (predicted class, probability, map peak).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: panels are drawn at least this many pixels wide so 32-64 px inputs stay readable
MIN_PANEL = 160


@dataclass
class Panel:
    """One model's map on one image."""

    label: str  # "S", "S' (aux)", "teacher", "model.int8.onnx"
    predicted: str
    prob: float
    cam: np.ndarray  # HxW, any range; rendered min-max scaled


@dataclass
class GalleryRow:
    source: str  # the image path as given
    image: np.ndarray  # HxWx3 uint8, what the model saw (after resize)
    panels: list[Panel] = field(default_factory=list)


def denormalize(x: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """Preprocessed CHW float -> HxWx3 uint8: show exactly the pixels the model saw."""
    img = x.transpose(1, 2, 0) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _unit(cam: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam, np.float64)
    lo, hi = float(cam.min()), float(cam.max())
    return np.zeros_like(cam) if hi <= lo else (cam - lo) / (hi - lo)


def colormap(t: np.ndarray) -> np.ndarray:
    """Jet colour map of values in [0, 1] -> HxWx3 uint8 (blue = low, red = high)."""
    rgb = [np.clip(1.5 - np.abs(4 * t - k), 0, 1) for k in (3, 2, 1)]
    return (np.stack(rgb, -1) * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Heat map over the image, resized to at least MIN_PANEL pixels wide."""
    h, w = image.shape[:2]
    heat = Image.fromarray(colormap(_unit(cam))).resize((w, h), Image.BILINEAR)
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * np.asarray(heat, np.float32)
    return enlarge(Image.fromarray(mixed.round().astype(np.uint8)))


def enlarge(img: Image.Image) -> Image.Image:
    """Integer upscale to at least MIN_PANEL pixels wide (small inputs are unreadable otherwise)."""
    scale = max(1, -(-MIN_PANEL // img.width))
    return img.resize((img.width * scale, img.height * scale), Image.BILINEAR)


def peak(cam: np.ndarray) -> tuple[int, int]:
    """(row, col) of the map's maximum, in input pixels."""
    r, c = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(r), int(c)


def _contact_sheet(rows: list[GalleryRow], tiles: list[list[Image.Image]]) -> Image.Image:
    """All rows in one PNG, a caption strip above each tile."""
    cap = 28
    tw, th = tiles[0][0].size
    cols = max(len(t) for t in tiles)
    sheet = Image.new("RGB", (cols * tw, len(tiles) * (th + cap)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (row, row_tiles) in enumerate(zip(rows, tiles)):
        captions = ["input"] + [f"{p.label}: {p.predicted} {p.prob:.2f}" for p in row.panels]
        for j, (tile, text) in enumerate(zip(row_tiles, captions)):
            x, y = j * tw, i * (th + cap)
            draw.text((x + 3, y + 3), text[: tw // 6], fill="black")
            sheet.paste(tile.resize((tw, th)), (x, y + cap))
    return sheet


def write_gallery(rows: list[GalleryRow], out: Path, title: str, notes: list[str] | None = None) -> Path:
    """Write overlays, gallery.md, gallery.png and explanations.json under `out`; returns gallery.md."""
    if not rows:
        raise ValueError("write_gallery needs at least one row")
    shutil.rmtree(out / "overlays", ignore_errors=True)  # a rerun must not leave another run's overlays behind
    (out / "overlays").mkdir(parents=True)
    labels = [p.label for p in rows[0].panels]
    md = [f"# {title}", "", *(notes or []), "", "| input | " + " | ".join(labels) + " |",
          "|---" * (len(labels) + 1) + "|"]
    records, tiles = [], []
    for i, row in enumerate(rows):
        stem = f"{i:03d}_" + re.sub(r"[^\w.-]", "_", Path(row.source).name).replace(".", "_")
        row_tiles = [enlarge(Image.fromarray(row.image))]
        row_tiles[0].save(out / "overlays" / f"{stem}_input.png")
        cells = [f"![input](overlays/{stem}_input.png)<br>{Path(row.source).name}"]
        for k, p in enumerate(row.panels):
            name = f"{stem}_{k}.png"
            tile = overlay(row.image, p.cam)
            tile.save(out / "overlays" / name)
            row_tiles.append(tile)
            cells.append(f"![{p.label}](overlays/{name})<br>{p.predicted} ({p.prob:.2f})")
            records.append({"source": row.source, "model": p.label, "predicted": p.predicted, "prob": p.prob,
                            "peak": peak(p.cam), "overlay": f"overlays/{name}"})
        tiles.append(row_tiles)
        md.append("| " + " | ".join(cells) + " |")
    _contact_sheet(rows, tiles).save(out / "gallery.png")
    (out / "explanations.json").write_text(json.dumps(records, indent=2) + "\n")
    (out / "gallery.md").write_text("\n".join(md) + "\n")
    return out / "gallery.md"
