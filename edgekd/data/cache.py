"""Decoded-image cache: every image decoded and resized once, stored as uint8 in one `.npy` memmap.

Decoding a 512x512 PNG and resizing it costs far more than reading 224x224x3 bytes, and the
paper trains for many epochs; the cache turns epochs 2..N (and later runs on the same files)
into memory-mapped reads. Keyed by (dataset root, manifest items hash, size, interpolation,
crop) so a different file list or preprocessing gets its own file. torch-free.

Trade-off: with the cache, training crops (RandomResizedCrop) are taken from the image already
resized to the input size rather than from the original; at the modest crop scales used
(0.8-1.0) this costs a little resolution. Eval pixels are identical to the uncached path.
Files changed in place are not detected: delete the cache folder after editing images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from edgekd.data.index import DatasetIndex
from edgekd.shared.images import load_image
from edgekd.data.manifest import Manifest
from edgekd.errors import EdgeKDError
from edgekd.shared.preprocess import PreprocessConfig, resize_image


def cache_key(manifest: Manifest, cfg: PreprocessConfig) -> str:
    ident = {
        "root": os.path.abspath(manifest.root),
        "items": manifest.sha256,
        "size": list(cfg.size),
        "interpolation": cfg.interpolation,
        "crop_pct": cfg.crop_pct,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


class DecodedCache:
    """N x H x W x 3 uint8 images in the order of `manifest.items`; opened lazily (fork/pickle safe)."""

    def __init__(self, path: Path, items_sha256: str, n: int, size: tuple[int, int]):
        self.path = Path(path)
        self.items_sha256 = items_sha256
        self.n = n
        self.size = size
        self._arr: np.ndarray | None = None

    # pickling (DataLoader workers with spawn) must not copy the mapped array
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_arr"} | {"_arr": None}

    @property
    def array(self) -> np.ndarray:
        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r")
        return self._arr

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return self.array[i]

    def image(self, i: int) -> Image.Image:
        return Image.fromarray(np.asarray(self.array[i]))  # HxWx3 uint8 -> RGB

    @classmethod
    def build(
        cls,
        source: Manifest | DatasetIndex,
        cfg: PreprocessConfig,
        cache_dir: str | os.PathLike,
        ids: list[int] | None = None,
        workers: int = 2,
        progress: bool = False,
    ) -> "DecodedCache":
        """Open the cache for `source` (an index + ids, or a manifest), decoding it first if absent."""
        manifest = source if isinstance(source, Manifest) else Manifest.from_index(source, ids)
        if isinstance(source, Manifest) and ids is not None:
            manifest = Manifest(manifest.root, manifest.layout, manifest.classes, [manifest.items[i] for i in ids])
        h, w = cfg.size
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        path = cache_dir / f"{cache_key(manifest, cfg)}_{h}x{w}.npy"
        n = len(manifest)
        if path.exists():
            arr = np.load(path, mmap_mode="r")
            if arr.shape == (n, h, w, 3) and arr.dtype == np.uint8:
                return cls(path, manifest.sha256, n, (h, w))
            path.unlink()  # stale or foreign file with our name: rebuild
        _check_space(cache_dir, n * h * w * 3)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
        paths = manifest.paths()

        def fill(i: int) -> None:
            arr[i] = np.asarray(resize_image(load_image(paths[i]), cfg))

        try:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                it = pool.map(fill, range(n))
                if progress:
                    from tqdm import tqdm

                    it = tqdm(it, total=n, desc=f"caching {n} images at {h}x{w}", unit="img")
                for _ in it:
                    pass
            arr.flush()
            del arr
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        path.with_suffix(".json").write_text(json.dumps({
            "root": manifest.root, "items_sha256": manifest.sha256, "n": n, "size": [h, w],
            "interpolation": cfg.interpolation, "crop_pct": cfg.crop_pct,
        }, indent=1) + "\n")
        return cls(path, manifest.sha256, n, (h, w))


def _check_space(cache_dir: Path, need: int) -> None:
    free = shutil.disk_usage(cache_dir).free
    if need > 0.95 * free:
        raise EdgeKDError(
            f"the decoded-image cache needs {need / 2**30:.1f} GiB but {cache_dir} has {free / 2**30:.1f} GiB free; "
            "fix: set cache_dir to a bigger disk, use a smaller subset/test_limit, or run without a cache"
        )
