#!/usr/bin/env bash
# Create .venv and install deepnotes with every optional group, from nothing.
# torch is pinned here (not in pyproject) so a plain CPU machine gets the small CPU build;
# set DEEPNOTES_TORCH to another requirement (e.g. "torch==2.11.0") to choose your own.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "${DEEPNOTES_TORCH:-torch==2.13.0}"
fi
"${PIP[@]}" -e ".[all]"
# medusa-llm, the Medusa peer: without its dependencies (medusa.model.utils needs only torch;
# the package pins old transformers/fschat versions the tests never use)
"${PIP[@]}" --no-deps "medusa-llm==0.1"
.venv/bin/python -c "import deepnotes, torch; print('deepnotes', deepnotes.__version__, '| torch', torch.__version__)"
