#!/usr/bin/env bash
# The test command from README.md (after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
