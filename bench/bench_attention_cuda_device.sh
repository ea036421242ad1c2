#!/usr/bin/env bash
# On the GPU machine: builds the CUDA op harness and the attention benchmark, runs the
# harness with the default and the alternative fast forward (SUSHI_FA_FWD32=1: 32 query
# rows per warp), then times both. Logs go to ${OUT:-build/gpu-logs}; the tables are printed last.
#   source scripts/device-env.sh && bash bench/bench_attention_cuda_device.sh [B,T,H,D ...]
set -o pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-build/gpu-logs}
mkdir -p "$LOG"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv >"$LOG/gpu.txt" 2>&1
t0=$(date +%s)
make -j16 core build/tests/test_ops_cuda build/bench/bench_attention_cuda >"$LOG/build.log" 2>&1 ||
  { tail -30 "$LOG/build.log"; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
export SUSHI_REPO_ROOT=$PWD CMOCKA_MESSAGE_OUTPUT=stdout
build/tests/test_ops_cuda >"$LOG/test_default.log" 2>&1 & p1=$!
SUSHI_FA_FWD32=1 build/tests/test_ops_cuda >"$LOG/test_alt.log" 2>&1 & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
echo "test_ops_cuda rc: default $r1, alternatives $r2 ($(( $(date +%s) - t0 )) s)"
grep -hE "FAILED|PASSED" "$LOG/test_default.log" "$LOG/test_alt.log"
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(16,1024,12,64 2,8192,12,64 8,2048,16,128)
build/bench/bench_attention_cuda "${shapes[@]}" >"$LOG/bench_default.log" 2>&1
SUSHI_FA_FWD32=1 build/bench/bench_attention_cuda "${shapes[@]}" >"$LOG/bench_alt.log" 2>&1
echo "== default"; cat "$LOG/bench_default.log"
echo "== SUSHI_FA_FWD32=1"; cat "$LOG/bench_alt.log"
exit $(( r1 | r2 ))
