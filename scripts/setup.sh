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
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned to the pair that imports together (pip takes them from this machine's disk);
# the project's lower bounds are then already satisfied and pip pulls no other torch.
# byte-compiled at install (pip's default), not skipped with --no-compile: where PYTHONDONTWRITEBYTECODE is
# set (this sandbox sets it) no .pyc is ever written, every process recompiles torch's imports, and the
# quickstart's later stages lost more than the install saved
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
echo "edgekd: environment ready in .venv ($(.venv/bin/python -c 'import torch,timm;print("torch",torch.__version__,"timm",timm.__version__)'))"
