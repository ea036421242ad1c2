#!/usr/bin/env bash
# Builds here (Debian 12, nvcc) every binary a GPU session runs and copies them, without
# debug info, into build-gpu/ (git ignores it), with the Debian runtime libraries they
# need that the GPU machine lacks in build-gpu/deb/, so the session carries this one
# folder (~50 MB) instead of spending its device time compiling CUDA:
#   bash scripts/gpu-prebuild.sh
#   then on the device, carrying build-gpu:
#   source scripts/device-env.sh && bash bench/gpu_session.sh
# (glibc here is older than the device's, so the binaries run there.) build-gpu/STAMP
# names the commit they are from.
set -euo pipefail
cd "$(dirname "$0")/.."
TESTS="test_ops_cuda test_student_cuda test_nvml test_encoders test_ops_rows test_ops_softmax test_topk
  test_deepseek_score"
BENCHES="bench_teacher_gpu bench_attention_cuda bench_train_gpu"
targets=""
for t in $TESTS; do targets="$targets build/tests/$t"; done
for b in $BENCHES; do targets="$targets build/bench/$b"; done
# shellcheck disable=SC2086
make -j"$(nproc)" $targets
rm -rf build-gpu
mkdir -p build-gpu/tests build-gpu/bench
for t in $TESTS; do objcopy --strip-debug "build/tests/$t" "build-gpu/tests/$t"; done
for b in $BENCHES; do objcopy --strip-debug "build/bench/$b" "build-gpu/bench/$b"; done
mkdir -p build-gpu/deb
(cd build-gpu/deb && apt-get download libjansson4 libcmocka0 libopenblas0 libopenblas0-pthread libgfortran5 \
  libquadmath0 >/dev/null)
echo "$(git rev-parse HEAD)$(git diff --quiet HEAD -- . || echo ' (with uncommitted changes)')" >build-gpu/STAMP
du -sh build-gpu
