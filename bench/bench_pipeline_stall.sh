#!/usr/bin/env bash
# The trainer's data-stall share of step time in the default distill pipeline (`make run`):
# seconds the trainer waited for scored batches after the first one arrived, over its
# whole training time, from the trainer's final metrics. Target: < 1%.
#   bench/bench_pipeline_stall.sh [STEPS] [extra sushi-run args]
# Reuses runs/distill/teacher when `make run` left one (else the pipeline pretrains it).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
STEPS=${1:-100}
shift || true
RUN=$(mktemp -d /tmp/sushi-stall-XXXXXX)
trap 'rm -rf "$RUN"' EXIT
TEACHER=runs/distill/teacher
[ -f "$TEACHER/config.json" ] || TEACHER=$RUN/teacher
# a copy of the run config with this run's paths and step count
sed -e "s|runs/distill|$RUN|g" -e "s|^  steps: .*|  steps: $STEPS|" configs/distill/tiny-cpu.yaml > "$RUN/run.yaml"
echo "distill pipeline: $STEPS steps, teacher $TEACHER, run $RUN"
"$BUILD/bin/sushi-run" pipelines/distill.yaml "vars.run=$RUN" "vars.teacher=$TEACHER" "vars.config=$RUN/run.yaml" \
  "$@" > "$RUN/run.log" 2>&1 || { tail -30 "$RUN/run.log"; exit 1; }
/usr/bin/python3 - "$RUN/metrics.jsonl" <<'PY'
import json, sys
end = None
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m["stage"] == "trainer" and m["kind"] == "metrics" and m["meta"].get("event") == "end" \
            and m["meta"].get("data_stall_s") is not None:
        end = m["meta"]
if end is None:
    sys.exit("no final trainer metrics in " + sys.argv[1])
stall, startup = end["data_stall_s"], end["startup_wait_s"]
wall = end["elapsed_s"] - startup   # training time: from the first batch to the end
print("trainer: %d steps, %.0f tokens/s, last step %.3f s" % (end["step"], end["tokens_per_s"], end["step_time_s"]))
print("data stall %.2f s of %.1f s training: %.2f%% of step time (target < 1%%); start-up wait %.2f s"
      % (stall, wall, 100 * stall / wall, startup))
PY
