"""`edgekd explain` arguments, shared by its two halves.

`--run RUN` (torch CAMs, `edgekd.explain.cli`) and `--artifact MODEL` (torch-free occlusion through
a runtime, `edgekd.export.explain_runtime`) take the same images and flags; the `edgekd` dispatcher
picks the half, so neither package imports the other and a runtime-only box never imports torch.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

from edgekd.errors import EdgeKDError
from edgekd.shared.inputs import expand_images

#: `--method` names of the torch CAMs (pytorch-grad-cam classes in `edgekd.explain.cam.METHODS`);
#: `randomcam` (random channel weights) is the floor a trustworthy method must beat.
CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "xgradcam", "hirescam", "eigencam", "randomcam")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edgekd explain", description="Where does the model look? Overlays per image "
                                 "plus a gallery (gallery.md, gallery.png) for a run's S / S' / teacher or an artifact.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="trainer run directory: torch CAMs of S, S' and the teacher")
    src.add_argument("--artifact", type=Path, help="exported .onnx / .xml: occlusion maps through the runtime, no torch")
    ap.add_argument("images", nargs="*", help="image files, folders (recursive), globs ('**' recursive), DICOM series")
    ap.add_argument("--sample", type=int, metavar="N", help="also explain N images of the test manifest, classes in turn")
    ap.add_argument("--data", type=Path, help="the manifest for --sample (default RUN/data/test.json)")
    ap.add_argument("--method", choices=[*CAM_METHODS, "occlusion"],
                    help="--run: a CAM method (default scorecam: the most faithful CAM in benchmarks/results/"
                    "cam_faithfulness*.md, and slower; gradcam is fast); --artifact: occlusion (the only one a runtime allows)")
    ap.add_argument("--models", default="student,aux,teacher", help="--run: which of student,aux,teacher to show")
    ap.add_argument("--layer", help="--run: CAM target layer name (default: the last feature map; ViT: last block's norm1)")
    ap.add_argument("--limit", type=int, default=None, help="explain only the first N images")
    ap.add_argument("--out", type=Path, help="gallery folder (default RUN/explain/METHOD or ARTIFACT_DIR/explain/NAME)")
    ap.add_argument("--threads", type=int, default=None, help="--artifact: runtime threads")
    return ap


def sample_manifest(path: Path, n: int) -> list[str]:
    """n images of a manifest, one class after another (a gallery should show every class)."""
    from edgekd.data import Manifest

    if not path.is_file():
        raise EdgeKDError(f"--sample: no manifest at {path}; fix: pass --data MANIFEST.json")
    by_class: dict[int, list[str]] = defaultdict(list)
    for address, label in Manifest.load(path).items:
        by_class[label].append(address)
    turns = zip_longest(*(by_class[k] for k in sorted(by_class)))
    return [a for turn in turns for a in turn if a is not None][:n]


def images_to_explain(a: argparse.Namespace) -> list[str]:
    """The positional images (expanded) plus `--sample N` of the test manifest."""
    images = expand_images(a.images)[: a.limit] if a.images else []
    if a.sample:
        data = a.data or (a.run / "data" / "test.json" if a.run else None)
        if data is None:
            raise EdgeKDError("--sample with --artifact needs --data MANIFEST.json (e.g. RUN/data/test.json)")
        images += sample_manifest(data, a.sample)
    if not images:
        raise EdgeKDError("no images to explain; fix: pass IMAGE/FOLDER/GLOB arguments or --sample N")
    return images
