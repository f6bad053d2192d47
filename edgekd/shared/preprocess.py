"""Eval preprocessing shared by training, export and the deployed runtime (no torch here).

One definition of "what the model sees": RGB -> squash-resize to the input size with the
model's interpolation (the paper resizes whole images to 224x224, so crop_pct=1.0) -> /255
-> normalise with the model's mean/std -> float32 CHW. `edgekd.data.torchdata.eval_transform`
is numerically the same pipeline in torch. Values come from timm's pretrained config.
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


def resolve_preprocess(model_name: str, image_size: int | None = None, **model_kwargs) -> PreprocessConfig:
    """Mean/std/interpolation/size from timm's pretrained config for `model_name` (never downloads).

    `image_size` overrides the size (e.g. 224 for every model, as in the paper); `img_size` in
    `model_kwargs` is honoured too. crop_pct is 1.0: whole images are resized, not centre-cropped.
    """
    import timm
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is not None:
        data = resolve_data_config(pretrained_cfg=cfg.to_dict())
    elif timm.is_model(model_name.split(".")[0]):
        model = timm.create_model(model_name, pretrained=False, **model_kwargs)
        data = resolve_data_config(model=model)
    else:
        raise EdgeKDError(f"unknown timm model {model_name!r}; fix: pick a name from timm.list_models()")
    size = image_size or model_kwargs.get("img_size")
    if isinstance(size, (tuple, list)):
        h, w = int(size[-2]), int(size[-1])
    elif size:
        h = w = int(size)
    else:
        h, w = data["input_size"][1], data["input_size"][2]
    interp = data.get("interpolation", "bicubic")
    return PreprocessConfig(
        input_size=(3, h, w),
        mean=tuple(data.get("mean", IMAGENET_MEAN)),
        std=tuple(data.get("std", IMAGENET_STD)),
        interpolation=interp if interp in INTERPOLATIONS else "bicubic",
        crop_pct=1.0,
    )


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
