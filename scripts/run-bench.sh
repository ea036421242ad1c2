#!/usr/bin/env bash
# `make bench`: runs every benchmark in $BUILD/bench with its defaults. Each prints its
# own figures and the ratio against the alternative it is compared with; a benchmark
# that needs a GPU reports that it skipped. Figures to keep go into bench/RESULTS.md.
#   scripts/run-bench.sh [PATTERN]
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export SUSHI_REPO_ROOT=$PWD
status=0
for b in "$BUILD"/bench/bench_*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  [ -n "${1:-}" ] && [[ "$name" != *$1* ]] && continue
  echo "==== $name"
  "$b" || { echo "==== $name failed (exit $?)"; status=1; }
done
# benchmarks that drive whole pipelines are scripts
for b in bench/bench_*.sh; do
  [ -f "$b" ] || continue
  name=$(basename "$b")
  [ -n "${1:-}" ] && [[ "$name" != *$1* ]] && continue
  echo "==== $name"
  BUILD=$BUILD bash "$b" || { echo "==== $name failed (exit $?)"; status=1; }
done
exit $status
