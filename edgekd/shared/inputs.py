"""Clinic inputs -> image addresses: files, folders (recursive), globs, DICOM series, archive members.

Torch-free and shared: `edgekd predict` (deployment side) and `edgekd explain` (training side)
accept the same arguments.
"""

from __future__ import annotations

import glob
from pathlib import Path

from edgekd.errors import EdgeKDError

_GLOB_CHARS = frozenset("*?[")


def _expand_one(arg: str) -> list[str]:
    from edgekd.shared.images import SCHEMES, is_candidate
    from edgekd.data.scan import scan_images

    if arg.startswith(SCHEMES):  # an image inside an archive, as manifests store it (idx://FILE#N)
        return [arg]
    paths = [Path(p) for p in sorted(glob.glob(arg, recursive=True))] if _GLOB_CHARS & set(arg) else [Path(arg)]
    out: list[str] = []
    for p in paths:
        if p.is_dir():
            out += [str(f) for f in scan_images(p)]
        elif p.is_file() and (is_candidate(p) or p == Path(arg)):
            out.append(str(p))  # a file named explicitly is always tried (its decoder error says why)
    return out


def expand_images(args: list[str]) -> list[str]:
    """Files, folders (recursive) and globs (`**` recursive) -> image paths, in order, once each.

    Folder scans keep what `edgekd data inspect` would read: image suffixes, .dcm/.dicom and
    suffix-less DICOM (DICM magic), skipping hidden files; each slice of a series is one image."""
    seen: dict[str, None] = {}
    for arg in args:
        found = _expand_one(arg)
        if not found:
            what = "matches no image" if _GLOB_CHARS & set(arg) or Path(arg).is_dir() else "does not exist"
            raise EdgeKDError(f"{arg!r} {what}; fix: pass image files, a folder of images or DICOM slices, or a "
                              "quoted glob such as 'scans/**/*.dcm'")
        seen.update(dict.fromkeys(found))
    return list(seen)
