"""Explanations: where does a model look?

Two paths that share rendering and metrics:
- `edgekd.explain.cam` (torch): Grad-CAM / Score-CAM / ... from pytorch-grad-cam on S, S' and
  the teacher of a run (`edgekd explain --run RUN IMAGES...`).
- `edgekd.export.explain_runtime` (torch-free): occlusion maps scored by an exported artifact
  through ONNX Runtime / OpenVINO (`edgekd explain --artifact MODEL.onnx IMAGES...`), also used
  by `edgekd verify` to measure explanation drift.

This package's `__init__`, `render` and `faithfulness` import no torch, so a clinic box with
`edgekd[runtime]` can render galleries.
"""

#: `--method` names of the torch CAMs (pytorch-grad-cam classes in `edgekd.explain.cam.METHODS`);
#: `randomcam` (random channel weights) is the floor a trustworthy method must beat.
CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "xgradcam", "hirescam", "eigencam", "randomcam")
