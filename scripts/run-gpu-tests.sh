#!/usr/bin/env bash
# The GPU test suite (`make test-gpu`, bench/gpu_session.sh): the CUDA op harness and the
# student on CUDA in bf16 and again with f16 activations, the GPU cases of the row-op,
# softmax, top-K and batched-scoring tests (f16 too where they are op tests), NVML and the
# encoders. Runs everything and exits 1 if anything failed. Binaries come from
# $BUILD/tests (default build), built beforehand (`make test-gpu` builds them).
#   scripts/run-gpu-tests.sh
set -u
cd "$(dirname "$0")/.."
rc=0
bash scripts/run-tests.sh --gpu _cuda || rc=1
SUSHI_CUDA_DTYPE=f16 bash scripts/run-tests.sh --gpu _cuda || rc=1
for t in test_ops_rows test_ops_softmax test_topk test_deepseek_score test_nvml test_encoders; do
  bash scripts/run-tests.sh --gpu "$t" || rc=1
done
for t in test_ops_rows test_ops_softmax test_topk; do
  SUSHI_CUDA_DTYPE=f16 bash scripts/run-tests.sh --gpu "$t" || rc=1
done
exit $rc
