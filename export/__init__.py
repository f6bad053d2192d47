"""edgekd.export: the deployment side (ONNX, ONNX Runtime INT8, OpenVINO, TensorRT, verify, bench)."""
