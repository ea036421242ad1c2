#!/usr/bin/env bash
# Runs every test binary in $BUILD/tests (cmocka), prints each failure, and ends with
# the line "N passed, N failed, N skipped". Exit status 1 if anything failed.
#   scripts/run-tests.sh [--gpu] [PATTERN]   PATTERN filters binaries by name
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD   # tests that run a program find it in $BUILD/bin
GPU=0
[ "${1:-}" = "--gpu" ] && { GPU=1; shift; }
PATTERN=${1:-}
export SUSHI_REPO_ROOT=$PWD
export CMOCKA_MESSAGE_OUTPUT=stdout
export SUSHI_TEST_GPU=$GPU
logdir=$BUILD/test-logs
mkdir -p "$logdir"
passed=0 failed=0 skipped=0
start=$(date +%s)
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  [ -n "$PATTERN" ] && [[ "$name" != *$PATTERN* ]] && continue
  log="$logdir/$name.log"
  t0=$(date +%s)
  "$t" >"$log" 2>&1
  rc=$?
  ok=$(grep -c '^\[       OK \]' "$log")
  bad=$(grep -E '^\[  FAILED  \] [A-Za-z_]' "$log" | grep -vc 'test(s)')
  # cmocka lists each skipped test twice (as it runs and in the summary): count names once
  sk=$(grep -E '^\[  SKIPPED \] [A-Za-z_]' "$log" | grep -v 'test(s)' | sort -u | wc -l)
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
    bad=1   # crashed or exited non-zero without a cmocka failure line
    echo "CRASH $name (exit $rc)"
  fi
  passed=$((passed + ok)); failed=$((failed + bad)); skipped=$((skipped + sk))
  printf '%-40s %3d ok %3d failed %3d skipped  %4ds\n' "$name" "$ok" "$bad" "$sk" $(( $(date +%s) - t0 ))
  if [ "$bad" -ne 0 ]; then
    echo "---- $log (last 40 lines) ----"; tail -n 40 "$log"; echo "----"
  fi
done
# End-to-end tests: scripts in tests/e2e (test_*.py run by the Debian python3 with
# PyTorch/pyzmq/msgpack, test_*.sh by bash). Each counts as one test: exit 0 passed,
# 77 skipped, anything else failed. They find programs in $BUILD/bin.
for t in tests/e2e/test_*.py tests/e2e/test_*.sh; do
  [ -f "$t" ] || continue
  name=$(basename "$t")
  [ -n "$PATTERN" ] && [[ "$name" != *$PATTERN* ]] && continue
  [ "$GPU" = 1 ] && continue
  log="$logdir/$name.log"
  t0=$(date +%s)
  case "$t" in
    *.py) timeout 900 /usr/bin/python3 "$t" >"$log" 2>&1 ;;
    *)    timeout 900 bash "$t" >"$log" 2>&1 ;;
  esac
  rc=$?
  ok=0 bad=0 sk=0
  case $rc in 0) ok=1 ;; 77) sk=1 ;; *) bad=1 ;; esac
  passed=$((passed + ok)); failed=$((failed + bad)); skipped=$((skipped + sk))
  printf '%-40s %3d ok %3d failed %3d skipped  %4ds\n' "$name" "$ok" "$bad" "$sk" $(( $(date +%s) - t0 ))
  if [ "$bad" -ne 0 ]; then
    echo "---- $log (exit $rc, last 40 lines) ----"; tail -n 40 "$log"; echo "----"
  fi
done
echo "tests took $(( $(date +%s) - start ))s"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
