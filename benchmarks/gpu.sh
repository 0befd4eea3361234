#!/usr/bin/env bash
# The sampling and generate benchmarks on CUDA, for a machine with an NVIDIA GPU (issue 18).
#
#   benchmarks/gpu.sh [--quick]
#
# Runs benchmarks/bench_sampling.py with HEPGEN_BENCH_DEVICE=cuda (batches 1e3 ... 1e6: rows/s
# of eager, graph, graph bf16, graph TF32, compiled, ONNX Runtime's CUDA provider when
# onnxruntime-gpu is installed, nflows and zuko, the peak GPU memory of each
# (torch.cuda.max_memory_allocated) and the matmul bound in float32, TF32 and bfloat16), then
# benchmarks/bench_generate.py (which adds its device="cuda" rows when torch sees a GPU).
# JSON goes to benchmarks/results/gpu/ (HEPGEN_GPU_RESULTS to change), with nvidia-smi's view
# of the card.  Without a usable GPU it says so and exits 0.
#
# Environment: PYTHON (default .venv/bin/python, else python3), HEPGEN_BENCH_BATCHES
# (comma-separated, default 1000,10000,100000,1000000), HEPGEN_GPU_RESULTS.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu.sh: no NVIDIA GPU here (nvidia-smi missing or failing): nothing to run."
    exit 0
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu.sh: nvidia-smi sees a GPU but $PY's torch does not" \
        "($("$PY" -c 'import torch; print(torch.__version__)' 2>&1 | tail -n 1));" \
        "install a CUDA build of torch (README, GPU installation): nothing run."
    exit 0
fi

RESULTS=${HEPGEN_GPU_RESULTS:-benchmarks/results/gpu}
mkdir -p "$RESULTS"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    >"$RESULTS/nvidia-smi.csv"
cat "$RESULTS/nvidia-smi.csv"

export HEPGEN_BENCH_DEVICE=cuda
export HEPGEN_BENCH_BATCHES=${HEPGEN_BENCH_BATCHES:-1000,10000,100000,1000000}
"$PY" benchmarks/run.py --output "$RESULTS" "$@" sampling
unset HEPGEN_BENCH_DEVICE HEPGEN_BENCH_BATCHES
"$PY" benchmarks/run.py --output "$RESULTS" "$@" generate
echo "gpu.sh: results in $RESULTS"
