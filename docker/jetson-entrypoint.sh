#!/usr/bin/env bash
# Jetson container entry: `build` (default) makes engines on THIS device from the shipped ONNX
# (/models/tensorrt/model.fp16.onnx for fp16, /models/tensorrt/model.int8.qdq.onnx for int8); any other
# arguments are passed to `edgekd` (e.g. `bench /models/tensorrt/model.int8.engine`).
set -euo pipefail
if [ "${1:-build}" != "build" ]; then
  exec edgekd "$@"
fi
cd /models
for p in ${EDGEKD_PRECISIONS:-int8 fp16}; do
  if [ "$p" = int8 ]; then src=tensorrt/model.int8.qdq.onnx; else src=tensorrt/model.fp16.onnx; fi
  if [ ! -f "$src" ]; then echo "skip $p: $src not shipped"; continue; fi
  edgekd export --build-on-device --onnx "$src" --precision "$p" --out tensorrt --max-batch "${EDGEKD_MAX_BATCH:-8}"
done
ls -l tensorrt/*.engine
