#!/usr/bin/env bash
# The CPU backend's results do not depend on its thread count: the same training run with
# 1, 2 and 3 threads writes bit-identical weights and optimizer moments (what
# train.deterministic relies on, and why a resumed run may use another thread count).
# A deterministic run on the CUDA backend is refused with a message naming the setting.
set -euo pipefail
cd "${SUSHI_REPO_ROOT:-$(dirname "$0")/../..}"
BIN=${BUILD:-build}/bin
[ -x "$BIN/sushi-trainer" ] || { echo "skip: sushi-trainer not built"; exit 77; }
d=$(mktemp -d /tmp/sushi-e2e-threads-XXXXXX)
trap 'rm -rf "$d"' EXIT
for t in 1 2 3; do
  "$BIN/sushi-trainer" --config configs/train/tiny-cpu.yaml train.steps=5 train.threads=$t --save "$d/t$t" > "$d/t$t.log" 2>&1
done
for f in model.safetensors optimizer.safetensors; do
  a=$(md5sum < "$d/t1/$f")
  for t in 2 3; do
    b=$(md5sum < "$d/t$t/$f")
    [ "$a" = "$b" ] || { echo "FAIL: $f differs between 1 and $t threads"; exit 1; }
  done
done
echo "ok: weights and moments identical with 1, 2 and 3 threads"
# deterministic on cuda: refused before anything runs (the pipeline config reads it)
cfg=configs/distill/tiny-cpu.yaml
if "$BIN/sushi-trainer" --config $cfg train.backend=cuda > "$d/cuda.log" 2>&1; then
  echo "FAIL: train.deterministic with backend cuda was accepted"; exit 1
fi
grep -q "train.deterministic needs train.backend cpu" "$d/cuda.log" || { cat "$d/cuda.log"; exit 1; }
echo "ok: deterministic on cuda refused"
