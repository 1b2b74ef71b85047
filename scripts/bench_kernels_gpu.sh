#!/usr/bin/env bash
# On a CUDA machine: `deepnotes bench kernels` at the issue's setting (bf16, B*T = 65,536,
# H*D = 2048, causal), with fla as a peer when it is importable. Writes OUT_DIR/results.json
# and kernels.png; copy them to benchmarks/kernels-<device>.{json,png} to commit.
#   bash scripts/bench_kernels_gpu.sh OUT_DIR [extra --field value flags]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:?usage: bench_kernels_gpu.sh OUT_DIR [flags]}"
shift
PY="${PYTHON:-python3}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" DEEPNOTES_NO_PROGRESS=1
unset TRITON_INTERPRET
"$PY" -m deepnotes bench kernels --device cuda --budget gpu --out "$OUT_DIR" "$@"
