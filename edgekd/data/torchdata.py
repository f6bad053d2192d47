"""torch side of the data layer: eval/train transforms and the `ImageDataset`.

`eval_transform` is `edgekd.shared.preprocess.preprocess_numpy` in torch (same PIL resize, same float32
arithmetic), so deployed preprocessing matches training. Augmentation is deliberately modest
(medical images: small crops/rotations, no flips by default) and configurable via `AugConfig`.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from edgekd.data.cache import DecodedCache
from edgekd.data.config import AugConfig
from edgekd.data.index import DatasetIndex
from edgekd.shared.images import load_image, relative_address
from edgekd.data.manifest import Manifest, items_sha256
from edgekd.errors import EdgeKDError
from edgekd.shared.preprocess import PreprocessConfig, resize_image

_MODES = {
    "nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC, "lanczos": InterpolationMode.LANCZOS,
    "box": InterpolationMode.BOX, "hamming": InterpolationMode.HAMMING,
}


class ResizeToInput:
    """The shared PIL resize (picklable, for DataLoader workers)."""

    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg

    def __call__(self, img: Image.Image) -> Image.Image:
        return resize_image(img, self.cfg)


class ToRGB:
    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == "RGB" else img.convert("RGB")


def eval_transform(cfg: PreprocessConfig) -> T.Compose:
    """PIL -> normalised float32 CHW tensor; equal to `preprocess_numpy` (max abs diff ~0)."""
    return T.Compose([ResizeToInput(cfg), T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])


def train_transform(cfg: PreprocessConfig, aug: AugConfig | None = None) -> T.Compose:
    """Random resized crop (scale ~0.8-1), optional flip, small rotation and brightness/contrast."""
    aug = aug or AugConfig()
    steps: list = [ToRGB(), T.RandomResizedCrop(cfg.size, scale=aug.scale, ratio=aug.ratio,
                                                interpolation=_MODES[cfg.interpolation])]
    if aug.hflip > 0:
        steps.append(T.RandomHorizontalFlip(aug.hflip))
    if aug.rotation > 0:
        steps.append(T.RandomRotation(aug.rotation, interpolation=InterpolationMode.BILINEAR))
    if aug.brightness > 0 or aug.contrast > 0:
        steps.append(T.ColorJitter(brightness=aug.brightness, contrast=aug.contrast))
    steps += [T.ToTensor(), T.Normalize(cfg.mean, cfg.std)]
    return T.Compose(steps)


class ImageDataset(torch.utils.data.Dataset):
    """(tensor, label) pairs for `ids` of an index or manifest (ids=None: all of it).

    With `cache` (a `DecodedCache` built for the same items, same order), images come from the
    memmap instead of being decoded; the transform's resize then is a no-op.
    """

    def __init__(self, source: DatasetIndex | Manifest, ids: list[int] | None = None, transform=None,
                 cache: DecodedCache | None = None):
        if isinstance(source, Manifest):
            chosen = range(len(source)) if ids is None else ids
            self.paths = [source.items[i][0] for i in chosen]
            self.targets = [int(source.items[i][1]) for i in chosen]
        else:
            chosen = range(len(source)) if ids is None else ids
            self.paths = [source.samples[i].path for i in chosen]
            self.targets = [source.samples[i].label for i in chosen]
        items = [(relative_address(p, source.root), y) for p, y in zip(self.paths, self.targets)]
        self.classes = list(source.classes)
        self.transform = transform
        self.cache = cache
        if cache is not None and (cache.n != len(items) or cache.items_sha256 != items_sha256(items)):
            raise EdgeKDError(
                f"decoded-image cache {cache.path} was built for a different file list; "
                "fix: build the cache from the same manifest/ids as the dataset"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Image.Image:
        return self.cache.image(i) if self.cache is not None else load_image(self.paths[i])

    def __getitem__(self, i: int):
        img = self.load(i)
        x = self.transform(img) if self.transform is not None else torch.from_numpy(
            np.asarray(img).transpose(2, 0, 1).copy())
        return x, self.targets[i]


def build_datasets(prepared, cfg: PreprocessConfig, aug: AugConfig | None = None,
                   cache_dir: str | None = None, progress: bool = False) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) datasets for a `PreparedData`; with `cache_dir`, both read from decoded caches."""
    out = []
    for part, tf in (("train", train_transform(cfg, aug)), ("test", eval_transform(cfg))):
        m = prepared.manifests[part]
        cache = DecodedCache.build(m, cfg, cache_dir, progress=progress) if cache_dir else None
        out.append(ImageDataset(m, None, tf, cache))
    return out[0], out[1]
