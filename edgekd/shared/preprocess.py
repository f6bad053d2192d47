"""Eval preprocessing shared by training, export and the deployed runtime (no torch here).

One definition of "what the model sees": RGB -> squash-resize to the input size with the
model's interpolation (the paper resizes whole images to 224x224, so crop_pct=1.0) -> /255
-> normalise with the model's mean/std -> float32 CHW. `edgekd.data.torchdata.eval_transform`
is numerically the same pipeline in torch. Values come from timm's pretrained config
(`edgekd.models.resolve_preprocess`, on the training side).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from edgekd.errors import EdgeKDError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class PreprocessConfig:
    """`input_size` is (C, H, W). crop_pct < 1 resizes to size/crop_pct, then centre-crops."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.interpolation not in INTERPOLATIONS:
            raise EdgeKDError(
                f"unknown interpolation {self.interpolation!r}; fix: use one of {', '.join(INTERPOLATIONS)}"
            )
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise EdgeKDError(f"input_size must be (C, H, W), got {self.input_size}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise EdgeKDError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.input_size[1], self.input_size[2]

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        keys = ("input_size", "mean", "std", "interpolation", "crop_pct")
        return cls(**{k: (tuple(d[k]) if isinstance(d[k], list) else d[k]) for k in keys if k in d})


def resize_image(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """RGB image at the model's (H, W). An image already at that size is returned unchanged, which
    is how cached (pre-resized) images pass through the same transforms without a second resize."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    h, w = cfg.size
    if img.size == (w, h):
        return img
    resample = INTERPOLATIONS[cfg.interpolation]
    if cfg.crop_pct >= 1.0:
        return img.resize((w, h), resample=resample)
    sw, sh = max(w, round(w / cfg.crop_pct)), max(h, round(h / cfg.crop_pct))
    img = img.resize((sw, sh), resample=resample)
    left, top = (sw - w) // 2, (sh - h) // 2
    return img.crop((left, top, left + w, top + h))


def normalize_uint8(arr: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """HxWx3 uint8 -> float32 CHW, (x/255 - mean)/std, in float32 like torchvision."""
    x = arr.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_numpy(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """PIL image -> float32 CHW model input (grey is replicated to RGB)."""
    return normalize_uint8(np.asarray(resize_image(img, cfg)), cfg)
