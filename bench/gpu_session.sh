#!/usr/bin/env bash
# One GPU session's checks and benchmarks in one go (about 9 minutes on an H100/H200),
# the most valuable results first in case time runs out:
#   1. build (the CUDA libraries, the GPU tests and the three GPU benchmarks), or nothing
#      when build-gpu/ holds prebuilt binaries
#   2. the GPU tests (scripts/run-gpu-tests.sh = make test-gpu: every CUDA op against the CPU
#      in bf16 and again in f16, the student step, top-K, batched teacher scoring, row ops,
#      softmax, NVML, encoders)
#   3. bench_teacher_gpu: teacher scoring against HF transformers eager / sdpa
#   4. bench_attention_cuda (both attention backwards: the current one and SUSHI_FA_BWD=fused)
#   5. bench_train_gpu (with its PyTorch side)
# Each step runs under `timeout` within what is left of SESSION_S seconds (default 540);
# a step that no longer fits is skipped and said so. Logs go to $OUT (default
# build/gpu-logs; at most 8 files, as the device run returns); the summary (pass/fail
# counts, tokens/s and ratio lines) is printed at the end and kept in summary.txt.
#
# Here, first: bash scripts/gpu-prebuild.sh  (the GPU binaries and their runtime
# libraries, into build-gpu/, ~50 MB). Then on the device, carrying build-gpu:
#   source scripts/device-env.sh && bash bench/gpu_session.sh
# With build-gpu/ present nothing is compiled there (BUILD=build-gpu). Without it, carry
# .deb (bash scripts/device-fetch-debs.sh) and step 1 builds into build/ (minutes of nvcc).
# BENCH_TEACHER_ARGS adds options to bench_teacher_gpu (e.g. "--layers 6" when short of
# time); its checkpoint is kept in /tmp/sushi-teacher-ckpt, so a rerun on the same
# machine skips writing it.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOG=${OUT:-build/gpu-logs}
mkdir -p "$LOG"
SESSION_S=${SESSION_S:-540}
T0=$(date +%s)
SUM="$LOG/summary.txt"
: >"$SUM"
note() { echo "$*" | tee -a "$SUM"; }
left() { echo $((SESSION_S - ($(date +%s) - T0))); }

# step NAME WANT_S LOGFILE COMMAND...: runs COMMAND under timeout min(WANT_S, time left − 10)
step() {
  local name=$1 want=$2 log=$3 rest lim t rc
  shift 3
  rest=$(($(left) - 10))
  if [ "$rest" -lt 20 ]; then
    note "== $name: skipped (${rest}s left)"
    return 99
  fi
  lim=$((want < rest ? want : rest))
  t=$(date +%s)
  echo "== $name (limit ${lim}s)" | tee -a "$log"
  timeout -k 10 "$lim" stdbuf -oL -eL "$@" >>"$log" 2>&1   # line-buffered: a timed-out step keeps its lines
  rc=$?
  note "== $name: rc $rc in $(($(date +%s) - t))s$([ $rc = 124 ] && echo ' (timed out)')"
  return $rc
}

if [ -z "${SUSHI_DEVICE_ENV:-}" ] && { [ -d .deb ] || [ -d build-gpu/deb ]; }; then
  # shellcheck disable=SC1091
  source scripts/device-env.sh
fi
B=build
[ -d build-gpu/tests ] && B=build-gpu
export SUSHI_REPO_ROOT=$ROOT CMOCKA_MESSAGE_OUTPUT=stdout BUILD=$B
# the oracle and the PyTorch sides need a python with torch: the first that has it
for py in ${SUSHI_PYTHON:-} python3 /usr/bin/python3; do
  if "$py" -c 'import torch' >/dev/null 2>&1; then
    export SUSHI_PYTHON=$py
    break
  fi
done
note "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
note "python: ${SUSHI_PYTHON:-none with torch}; $(${SUSHI_PYTHON:-python3} -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1 | tail -1)"

# 1. build
TARGETS="core build/tests/test_ops_cuda build/tests/test_student_cuda build/tests/test_nvml build/tests/test_encoders
  build/tests/test_ops_rows build/tests/test_ops_softmax build/tests/test_topk build/tests/test_deepseek_score
  build/bench/bench_teacher_gpu build/bench/bench_attention_cuda build/bench/bench_train_gpu"
if [ "$B" = build-gpu ]; then
  note "== build: prebuilt binaries from build-gpu ($(cat build-gpu/STAMP 2>/dev/null))"
else
  # shellcheck disable=SC2086
  step build 240 "$LOG/build.log" make -k -j16 $TARGETS
  grep -E "error|Error" "$LOG/build.log" | head -5 | tee -a "$SUM"
fi

# 2. the GPU tests
TL="$LOG/tests.log"
step tests 200 "$TL" bash scripts/run-gpu-tests.sh

# 3. teacher scoring against HF
# shellcheck disable=SC2086
step bench_teacher_gpu 220 "$LOG/bench_teacher_gpu.log" "$B/bench/bench_teacher_gpu" --dir /tmp/sushi-teacher-ckpt \
  --reps 5 ${BENCH_TEACHER_ARGS:-}

# 4, 5. the other GPU benchmarks
step bench_attention_cuda 60 "$LOG/bench_attention_cuda.log" "$B/bench/bench_attention_cuda"
step bench_train_gpu 150 "$LOG/bench_train_gpu.log" "$B/bench/bench_train_gpu" --steps 10

# summary
{
  echo "---- summary ($(($(date +%s) - T0)) s)"
  echo "tests (run-tests.sh lines: passed / failed / skipped):"
  grep -hE "^[0-9]+ passed|^test_[a-z0-9_]+ +[0-9]+ ok|CRASH" "$TL" 2>/dev/null
  echo "benchmarks:"
  grep -hE "tokens/s|ratio|checkpoint:|loaded on|bench total|nothing measured|not usable|not measured|skipped:|batch .* ms|MFU|step ms|^B,T,H,D|^[0-9]+,[0-9]+,[0-9]+,[0-9]+ " \
    "$LOG/bench_teacher_gpu.log" "$LOG/bench_attention_cuda.log" "$LOG/bench_train_gpu.log" 2>/dev/null | head -60
} | tee -a "$SUM"
