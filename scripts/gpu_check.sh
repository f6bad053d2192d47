#!/usr/bin/env bash
# GPU check (issue 19): bf16 AMP training steps of ViT-T, ConvNeXt-F and Lite0 at 224 px through the real
# trainer (accelerate launch), ours vs cm1, beside the paper's Table 8 -> benchmarks/results/gpu_check.{json,md}.
# At most 8 minutes on one CUDA GPU (all runs share --budget, 450 s), nothing downloaded; without a GPU it prints
# "skipped: no CUDA GPU (...)" and exits 0. Runs over whatever torch/timm/accelerate the machine has:
# edgekd is installed with --no-deps only when it is not importable yet.
#   bash scripts/gpu_check.sh [--steps 50] [--out DIR]   # PYTHON=python3.12 (on PATH or absolute) picks the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=$PWD/.venv/bin/python; else PYTHON=python3; fi
fi
# asked from / because from here the source folder edgekd/ would import without being installed
if ! (cd / && "$PYTHON" -c "import edgekd") 2>/dev/null; then
  # --no-build-isolation: offline, pip cannot fetch setuptools into an isolated build environment
  "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e .
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
