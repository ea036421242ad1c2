#!/usr/bin/env bash
# On the GPU machine: builds the CUDA op harness and the attention
# benchmark, runs both and leaves logs in ${OUT:-build/gpu-logs}.
#   source scripts/device-env.sh && bash scripts/gpu-check.sh [--no-bench]
set -o pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-build/gpu-logs}
mkdir -p "$LOG"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv >"$LOG/gpu.txt" 2>&1
make -j16 build/tests/test_ops_cuda build/bench/bench_attention_cuda >"$LOG/build.log" 2>&1 ||
  { tail -30 "$LOG/build.log"; exit 1; }
SUSHI_REPO_ROOT=$PWD CMOCKA_MESSAGE_OUTPUT=stdout build/tests/test_ops_cuda 2>&1 | tee "$LOG/test_ops_cuda.log" |
  grep -E 'FAILED|OK|SKIPPED|rel err .*[1-9]e-0[12]|error|seed' ; rc=${PIPESTATUS[0]}
if [ "${1:-}" != "--no-bench" ]; then
  build/bench/bench_attention_cuda 2>&1 | tee "$LOG/bench_attention_cuda.log"
fi
exit $rc
