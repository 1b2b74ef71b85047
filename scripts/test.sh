#!/usr/bin/env bash
# Set everything up from nothing, then lint, format-check and run the test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k mixers`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
# Triton kernels run on the CPU through Triton's interpreter in the test suite.
export TRITON_INTERPRET=1
export DEEPNOTES_NO_PROGRESS=1
# One worker per core; each worker runs torch single-threaded (tests/conftest.py).
.venv/bin/python -m pytest -n "${DEEPNOTES_TEST_WORKERS:-2}" "$@"
