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


class TwoViews(torch.utils.data.Dataset):
    """(view 1, label, view 2): two independent draws of the training transform on the same image
    (`method.aux_view=augmented`: S learns from view 1, S' predicts on view 2, mean teacher's noise).

    View 1 is exactly what `dataset[i]` gives (same global torch RNG draws, so S's inputs and the
    data order are those of `aux_view=same`); view 2 is drawn from its own generator seeded by
    (seed, epoch, i), restoring the global RNG after: reproducible, independent of workers and
    ranks, and unchanged by a resume. Call `set_epoch(e)` every epoch for new views.
    """

    def __init__(self, dataset: ImageDataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        img, transform = self.dataset.load(i), self.dataset.transform
        x1 = transform(img)
        view_seed = int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):  # CPU only: CUDA's generator (dropout on GPU) is left alone
            torch.default_generator.manual_seed(view_seed)
            x2 = transform(img)
        return x1, self.dataset.targets[i], x2


def build_datasets(prepared, cfg: PreprocessConfig, aug: AugConfig | None = None,
                   cache_dir: str | None = None, progress: bool = False) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) datasets for a `PreparedData`; with `cache_dir`, both read from decoded caches."""
    out = []
    for part, tf in (("train", train_transform(cfg, aug)), ("test", eval_transform(cfg))):
        m = prepared.manifests[part]
        cache = DecodedCache.build(m, cfg, cache_dir, progress=progress) if cache_dir else None
        out.append(ImageDataset(m, None, tf, cache))
    return out[0], out[1]
