"""`edgekd explain --run RUN`: torch CAMs (pytorch-grad-cam) of a run's S, S' and teacher side by side.

The `--artifact MODEL.onnx|.xml` half (occlusion through ONNX Runtime / OpenVINO, no torch) is
`edgekd.export.explain_runtime.main`; the `edgekd` dispatcher picks the half, and both parse the
same arguments (`edgekd.shared.explain_args`).
"""

from __future__ import annotations

from edgekd.errors import EdgeKDError
from edgekd.shared.explain_args import images_to_explain, parser


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.artifact is not None:
        raise EdgeKDError("--artifact is explained by `edgekd explain` (the dispatcher); fix: run "
                          "`edgekd explain --artifact MODEL.onnx ...`")
    if a.method == "occlusion":
        raise EdgeKDError("--method occlusion explains an exported artifact; fix: pass --artifact MODEL.onnx, "
                          "or a CAM method with --run")
    images = images_to_explain(a)
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
