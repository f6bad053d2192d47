"""Tiny models whose right answer for "where does it look" is known by construction.

`RegionNet` only sees one region R of its input (a fixed gate zeroes its features
elsewhere), so every faithful saliency map must peak inside R, whatever the image. R is off
the diagonal, so a transposed or flipped map lands outside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

SIZE = 32
#: rows, cols of R in input pixels (the gate's 8x8 cells 0:3 x 5:8, 4 px each)
REGION = (slice(0, 12), slice(20, 32))
CLASSES = ["elsewhere", "region"]
PREPROCESS = {"input_size": [3, SIZE, SIZE], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
              "interpolation": "bilinear", "crop_pct": 1.0}


class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.zeros(1, 1, SIZE // 4, SIZE // 4)
        g[..., REGION[0].start // 4 : REGION[0].stop // 4, REGION[1].start // 4 : REGION[1].stop // 4] = 1
        self.register_buffer("gate", g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate


class RegionNet(nn.Module):
    """Brightness detector gated to R: logit('region') = mean gated activation."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 4, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.linspace(0.05, 0.2, 4).view(4, 1, 1, 1).expand(4, 3, 3, 3))
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(4), Gate())
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]) * 3)
            self.head.bias.copy_(torch.tensor([0.0, -0.2]))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean((2, 3)))


def textures(n: int, seed: int = 0) -> np.ndarray:
    """Bright random textures, the same statistics everywhere: (n, 3, SIZE, SIZE) in [0.3, 1]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 1.0, (n, 3, SIZE, SIZE)).astype(np.float32)


def in_region(peak: tuple[int, int] | list[int]) -> bool:
    r, c = peak
    return REGION[0].start <= r < REGION[0].stop and REGION[1].start <= c < REGION[1].stop


def region_share(cam: np.ndarray) -> float:
    """Share of the map's positive mass inside R (R is 3/16 of the image)."""
    pos = np.clip(cam, 0, None)
    return float(pos[REGION].sum() / max(pos.sum(), 1e-12))


def write_pngs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, x in enumerate(textures(n, seed)):
        p = folder / f"img_{i}.png"
        Image.fromarray((x.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(p)
        out.append(p)
    return out


def export_region_onnx(out_dir: Path) -> Path:
    """RegionNet as an edgekd ONNX artifact (metadata inside), for the torch-free tests."""
    from edgekd.export.onnx_export import OnnxExportConfig, export_onnx
    from edgekd.shared.card import StudentCard

    card = StudentCard("regionnet", 2, list(CLASSES), preprocess=dict(PREPROCESS), edgekd_version="test")
    return export_onnx(RegionNet().eval(), card, out_dir, OnnxExportConfig(slim=False, static_batch=0)).dynamic
