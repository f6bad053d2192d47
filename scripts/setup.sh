#!/usr/bin/env bash
# Idempotent setup on a fresh machine: Debian packages (the data set; chromium, which
# tests/test_report_html.py uses to screenshot report.html headless), .venv with torch from local disk,
# then edgekd with its training, export, explain, cluster (Ray) and dev extras (EXTRAS=a,b: only those;
# the quickstart asks for train,export,explain).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-train,export,explain,cluster,dev}

if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q dataset-fashion-mnist chromium
fi

if [ ! -x .venv/bin/python ]; then
  # without a pip of its own: uv installs everything here, and ensurepip's copy only lengthened a fresh setup
  "$PY" -m venv --without-pip .venv
fi
# uv installs: the quickstart's setup stage took half pip's time (benchmarks/results/quickstart_time.md
# vs its record at 42a478e). torch first, pinned to the pair that imports together (scripts/constraints.txt), from this machine's
# wheel folders where it has them (LOCAL_WHEELS; elsewhere uv takes PyPI's build). Then edgekd and its extras (same
# constraints), byte-compiled in bulk only with the dev extra: the test suite starts hundreds of interpreters that
# import nearly everything, while the quickstart's few stages import a known set and compiling the rest only
# lengthened its setup stage (quickstart_time.md vs its record at 7d90dc9). Last, one import of what edgekd's stages load
# writes the .pyc of those modules: where PYTHONDONTWRITEBYTECODE is set (this sandbox sets it) nothing else would,
# and every stage would recompile its imports.
LOCAL_WHEELS=${LOCAL_WHEELS:-/opt/wheels /opt/pypi/files /opt/pypi-more/files}
FIND_LINKS=()
for d in $LOCAL_WHEELS; do [ -d "$d" ] && FIND_LINKS+=(--find-links "$d"); done
if [ ! -x .venv/bin/uv ]; then  # the machine's pip puts uv in (pip >= 22.3); else the venv gets its own pip first
  "$PY" -m pip --python .venv/bin/python install -q uv || { .venv/bin/python -m ensurepip && .venv/bin/python -m pip install -q uv; }
fi
UV=(.venv/bin/uv pip install -q --python .venv/bin/python -c scripts/constraints.txt)
"${UV[@]}" "${FIND_LINKS[@]}" torch torchvision
COMPILE=(); [[ ",$EXTRAS," == *,dev,* ]] && COMPILE=(--compile-bytecode)
"${UV[@]}" "${COMPILE[@]}" -e ".[$EXTRAS]"
env -u PYTHONDONTWRITEBYTECODE .venv/bin/python - <<'EOF'
import importlib

for name in ("torch", "torchvision", "torch.onnx", "timm", "accelerate", "sklearn.metrics", "scipy.stats",
             "matplotlib.pyplot", "edgekd.cli", "edgekd.train",  # train
             "onnx", "onnxruntime", "onnxslim", "openvino", "nncf", "edgekd.export.pipeline",  # export
             "pytorch_grad_cam", "edgekd.explain.cam",  # explain
             "pydicom", "torch.utils.tensorboard", "ray", "pytest"):  # DICOM data, trackers, cluster, the tests
    try:  # the extras not installed are skipped
        importlib.import_module(name)
    except ImportError:
        pass
EOF
echo "edgekd: environment ready in .venv ($(.venv/bin/python -c 'from importlib.metadata import version as v; print("torch", v("torch"), "timm", v("timm"))'))"
