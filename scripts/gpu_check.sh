#!/usr/bin/env bash
# The Triton kernels' tests on CUDA, at full and awkward sizes (T = 63, 1000, 2048, ...):
# every `gpu`-marked test under tests/ops, against float64 references on the GPU.
# Runs with the machine's own python3 (no install needed): PYTHONPATH=src.
# Extra arguments go to pytest (e.g. `-k flash`). WORKERS sets pytest-xdist workers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" DEEPNOTES_NO_PROGRESS=1
unset TRITON_INTERPRET
"$PY" -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device';
print('torch', torch.__version__, '| triton', triton.__version__, '|', torch.cuda.get_device_name())"
"$PY" -m pytest tests/ops -m gpu -p no:cacheprovider -q -n "${WORKERS:-8}" "$@"
