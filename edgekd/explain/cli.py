"""`edgekd explain`: saliency galleries for a run's models or for an exported artifact.

`--run RUN`: Grad-CAM / Score-CAM / ... (pytorch-grad-cam) for S, S' and the teacher side by
side. `--artifact MODEL.onnx|.xml`: occlusion maps scored through ONNX Runtime / OpenVINO,
no torch needed (a clinic box with `edgekd[runtime]`). Imports stay lazy for that reason.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

from edgekd.errors import EdgeKDError
from edgekd.explain import CAM_METHODS


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


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    from edgekd.export.predict import expand_images

    images = expand_images(a.images)[: a.limit] if a.images else []
    if a.sample:
        data = a.data or (a.run / "data" / "test.json" if a.run else None)
        if data is None:
            raise EdgeKDError("--sample with --artifact needs --data MANIFEST.json (e.g. RUN/data/test.json)")
        images += sample_manifest(data, a.sample)
    if not images:
        raise EdgeKDError("no images to explain; fix: pass IMAGE/FOLDER/GLOB arguments or --sample N")
    if a.artifact is not None:
        if a.method not in (None, "occlusion"):
            raise EdgeKDError(f"--method {a.method} needs the torch model; fix: use --run RUN for CAMs, or "
                              "--method occlusion on an artifact")
        from edgekd.export.explain_runtime import explain_artifact

        out = a.out or a.artifact.parent / "explain" / a.artifact.name.replace(".", "_")
        gallery = explain_artifact(a.artifact, images, out, threads=a.threads)
    else:
        if a.method == "occlusion":
            raise EdgeKDError("--method occlusion explains an exported artifact; fix: pass --artifact MODEL.onnx, "
                              "or a CAM method with --run")
        try:
            from edgekd.explain.cam import CamConfig
            from edgekd.explain.run import ExplainRequest, explain_run
        except ModuleNotFoundError as e:
            raise EdgeKDError(f"--run needs the Python package {e.name!r}; fix: pip install 'edgekd[train,explain]' "
                              "(a runtime-only box can use --artifact MODEL.onnx)") from e

        method = a.method or "scorecam"
        roles = tuple(r.strip() for r in a.models.split(",") if r.strip())
        req = ExplainRequest(a.run, images, a.out or a.run / "explain" / method, CamConfig(method, a.layer), roles)
        gallery = explain_run(req)
    print(f"{len(images)} images -> {gallery} (+ gallery.png, overlays/, explanations.json)")
    return 0
