"""Read any supported image address into a PIL RGB image, and check files cheaply at discovery.

Addresses: a plain file (PNG/JPG/BMP/TIFF/..., or DICOM), `idx://FILE#N` (MNIST-style idx,
optionally gzipped), `npz://FILE#SPLIT#N` (MedMNIST `.npz`). Grey images are replicated to
3 channels here, once, so every model sees RGB. torch-free; pydicom is imported lazily.
"""

from __future__ import annotations

import gzip
import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgekd.errors import EdgeKDError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm"})
DICOM_EXTS = frozenset({".dcm", ".dicom"})
SCHEMES = ("idx://", "npz://")


def require(module: str, purpose: str):
    """Import an optional dependency, or say which package to install (no bare ImportError)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = {"sklearn": "scikit-learn"}.get(module, module)
        raise EdgeKDError(
            f"{purpose} needs the Python package {package!r}, which is not installed; "
            f"fix: pip install {package} (or pip install 'edgekd[train]')"
        ) from e


# ---------------------------------------------------------------- addresses

def split_address(address: str) -> tuple[str | None, str, list[str]]:
    """Address -> (scheme, file, fragments).

    `idx://F#7` -> ("idx", "F", ["7"]); `npz://F#train#3` -> ("npz", "F", ["train", "3"]); a file -> (None, file, []).
    """
    if address.startswith("idx://"):
        file, _, n = address[6:].rpartition("#")
        return "idx", file, [n]
    if address.startswith("npz://"):
        file, split, n = address[6:].rsplit("#", 2)
        return "npz", file, [split, n]
    return None, address, []


def join_address(scheme: str | None, file: str, frag: list[str]) -> str:
    return file if scheme is None else f"{scheme}://{file}#" + "#".join(frag)


def relative_address(address: str, root: str | os.PathLike) -> str:
    """Address with its file part relative to `root` (posix separators) when it lies under it."""
    scheme, file, frag = split_address(address)
    base = os.fspath(root).rstrip("/") + "/"
    if file.startswith(base):  # fast path: discovery stores paths under the resolved root
        return join_address(scheme, file[len(base):].replace(os.sep, "/"), frag)
    if not os.path.isabs(file):
        return address
    try:
        rel = Path(file).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        rel = file
    return join_address(scheme, rel, frag)


def absolute_address(address: str, root: str | os.PathLike) -> str:
    """Inverse of `relative_address`: absolute file part, for loading."""
    scheme, file, frag = split_address(address)
    if not os.path.isabs(file):
        file = os.path.join(os.fspath(root), file)
    return join_address(scheme, file, frag)


def is_dicom_file(path: str | os.PathLike) -> bool:
    """By extension, else by the `DICM` magic at byte 128 (DICOM files often have no suffix)."""
    p = Path(path)
    if p.suffix.lower() in DICOM_EXTS:
        return True
    if p.suffix:
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def is_candidate(path: Path) -> bool:
    """Files a folder scan should try as images (everything else, e.g. xlsx/txt/csv, is ignored)."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_EXTS or suffix in DICOM_EXTS or (not suffix and is_dicom_file(path))


# ---------------------------------------------------------------- idx / npz archives

def _open_maybe_gz(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


@lru_cache(maxsize=4)
def read_idx(path: str) -> np.ndarray:
    """Whole idx file as a uint8 array (N[,H,W]); cached because per-item reads would re-inflate it."""
    with _open_maybe_gz(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise EdgeKDError(f"{path} is not an unsigned-byte idx file; fix: use the original *-ubyte(.gz) files")
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise EdgeKDError(f"{path} is truncated ({arr.size} of {int(np.prod(shape))} bytes); fix: re-fetch the file")
    return arr.reshape(shape)


@lru_cache(maxsize=8)
def read_npz(path: str, key: str) -> np.ndarray:
    """One array of a MedMNIST-style `.npz` (cached: np.load re-reads the zip member each time)."""
    with np.load(path) as z:
        if key not in z:
            raise EdgeKDError(f"{path} has no array {key!r} (has {sorted(z.files)}); fix: use MedMNIST's npz format")
        return z[key]


# ---------------------------------------------------------------- DICOM

def dicom_to_array(path: str | os.PathLike) -> np.ndarray:
    """DICOM -> uint8 HxW (grey) or HxWx3: modality rescale, stored window, MONOCHROME1 inverted.

    Without a stored window the full value range is stretched to 0..255. Multi-frame: frame 0.
    """
    pydicom = require("pydicom", "reading DICOM files")

    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut

    ds = pydicom.dcmread(os.fspath(path))
    if "PixelData" not in ds:
        raise ValueError("DICOM file has no pixel data")
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("SamplesPerPixel", 1)) == 3:  # colour: already display values
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        return np.clip(arr, 0, 255).astype(np.uint8)

    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        lo, hi = center - width / 2.0, center + width / 2.0
    else:
        lo, hi = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if hi <= lo else np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    out = np.rint(scaled * 255.0).astype(np.uint8)
    if photometric == "MONOCHROME1":  # high values are dark: flip so every image is MONOCHROME2
        out = 255 - out
    return out


def _first(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if not isinstance(value, (str, bytes)) and hasattr(value, "__len__") else float(value)
    except (TypeError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- loading

def to_rgb(img: Image.Image) -> Image.Image:
    """Grey/palette/16-bit/alpha -> 8-bit RGB (grey replicated to 3 channels)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNG: stretch to 8 bits, keep contrast
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        img = Image.fromarray(np.rint(a).astype(np.uint8), "L")
    return img.convert("RGB")


def _array_to_rgb(arr: np.ndarray) -> Image.Image:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return to_rgb(Image.fromarray(arr))


def _load(address: str) -> Image.Image:
    scheme, file, frag = split_address(address)
    if scheme == "idx":
        return _array_to_rgb(read_idx(file)[int(frag[0])])
    if scheme == "npz":
        return _array_to_rgb(read_npz(file, f"{frag[0]}_images")[int(frag[1])])
    if is_dicom_file(file):
        return _array_to_rgb(dicom_to_array(file))
    with Image.open(file) as im:
        im.load()
        return to_rgb(im)


def load_image(address: str | os.PathLike) -> Image.Image:
    """Decode one image address to PIL RGB; a failure names the file and the fix."""
    address = os.fspath(address)
    try:
        return _load(address)
    except EdgeKDError:
        raise
    except FileNotFoundError as e:
        raise EdgeKDError(
            f"image not found: {address}; fix: the dataset moved? re-run `edgekd data inspect` on its new path "
            "(manifests store paths relative to the dataset root)"
        ) from e
    except Exception as e:  # noqa: BLE001 - a boundary: any decoder failure becomes a named, fixable error
        raise EdgeKDError(
            f"cannot read image {address}: {e}; fix: replace or delete the file "
            "(`edgekd data inspect ROOT --verify full` lists every unreadable file)"
        ) from e


# ---------------------------------------------------------------- discovery-time checks

def check_file(path: str | os.PathLike, verify: str = "quick") -> str | None:
    """Why `path` is unusable, or None. `quick` walks PNG chunks (catches truncation) and checks
    the JPEG end marker, decoding only suspects; `full` decodes everything; `none` trusts files."""
    path = os.fspath(path)
    if verify == "none":
        return None
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        if is_dicom_file(path):
            if verify == "full":
                dicom_to_array(path)
            else:
                ds = require("pydicom", "reading DICOM files").dcmread(path, stop_before_pixels=True)
                if "Rows" not in ds:
                    return "DICOM file without an image (no Rows/PixelData)"
            return None
        with Image.open(path) as im:
            fmt = im.format
            if verify == "full":
                im.load()
                return None
            im.verify()  # PNG: walks every chunk and CRC -> truncated/corrupt files raise here
        if fmt == "JPEG" and not _jpeg_has_end_marker(path):
            with Image.open(path) as im:  # suspect: decode to be sure (trailing bytes are legal)
                im.load()
        return None
    except EdgeKDError:
        raise
    except UnidentifiedImageError:
        return "not an image file PIL can identify (corrupt or wrong extension)"
    except Exception as e:  # noqa: BLE001 - any decoder error means "unusable", reported per file
        msg = str(e) or type(e).__name__
        return f"corrupt or truncated ({msg})"


def _jpeg_has_end_marker(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 1024))
        return b"\xff\xd9" in f.read()
