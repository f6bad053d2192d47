"""Explanations: where does a model look?

Two paths that share rendering and metrics:
- `edgekd.explain.cam` (torch): Grad-CAM / Score-CAM / ... from pytorch-grad-cam on S, S' and
  the teacher of a run (`edgekd explain --run RUN IMAGES...`).
- the deployment side's `edgekd.export.explain_runtime` (torch-free): occlusion maps scored by an
  exported artifact through ONNX Runtime / OpenVINO (`edgekd explain --artifact MODEL.onnx`),
  also used by `edgekd verify` to measure explanation drift.

Shared by both, torch-free: `edgekd.shared.saliency` (occlusion, map comparison),
`edgekd.shared.render` (galleries), `edgekd.shared.explain_args` (the verb's arguments). This
package never imports `edgekd.export` (tests/test_import_graph.py).
"""
