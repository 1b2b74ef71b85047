#!/usr/bin/env bash
# Full-size tests excluded from the default suite (marked `slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TRITON_INTERPRET=1 DEEPNOTES_NO_PROGRESS=1
.venv/bin/python -m pytest -m slow -p no:cacheprovider "$@"
