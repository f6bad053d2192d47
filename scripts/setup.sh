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
  "$PY" -m venv .venv
fi
# uv installs: the quickstart's setup stage took half pip's time (benchmarks/results/quickstart_time.md
# vs its record at 42a478e). torch first, pinned to the pair that imports together (scripts/constraints.txt), from this machine's
# wheel folders where it has them (LOCAL_WHEELS; elsewhere uv takes PyPI's build), not byte-compiled: most
# of the 5.5 GB build is never imported on a CPU. Then edgekd and its extras (same constraints),
# byte-compiled in parallel. Last, one import of what edgekd's stages load writes torch's .pyc for those
# modules only: where PYTHONDONTWRITEBYTECODE is set (this sandbox sets it) nothing else would, and every
# stage would recompile torch's imports.
LOCAL_WHEELS=${LOCAL_WHEELS:-/opt/wheels /opt/pypi/files /opt/pypi-more/files}
FIND_LINKS=()
for d in $LOCAL_WHEELS; do [ -d "$d" ] && FIND_LINKS+=(--find-links "$d"); done
.venv/bin/python -m pip install -q uv
UV=(.venv/bin/uv pip install -q --python .venv/bin/python -c scripts/constraints.txt)
"${UV[@]}" "${FIND_LINKS[@]}" torch torchvision
"${UV[@]}" --compile-bytecode -e ".[$EXTRAS]"
env -u PYTHONDONTWRITEBYTECODE .venv/bin/python - <<'EOF'
import importlib

for name in ("torch", "torchvision", "torch.onnx", "timm", "accelerate", "nncf", "pytorch_grad_cam"):
    try:  # the extras not installed are skipped
        importlib.import_module(name)
    except ImportError:
        pass
EOF
echo "edgekd: environment ready in .venv ($(.venv/bin/python -c 'from importlib.metadata import version as v; print("torch", v("torch"), "timm", v("timm"))'))"
