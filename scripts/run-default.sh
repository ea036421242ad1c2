#!/usr/bin/env bash
# `make run`: the default job — the distillation pipeline on the CPU (pipelines/distill.yaml):
# a tiny DeepSeek teacher is pretrained when runs/distill/teacher holds none, then
# distilled (two teacher replicas, KD) into a small student, evaluated on held-out text.
# The summary at the end gives the student's and the teacher's held-out perplexity and
# the checkpoint paths. Extra arguments go to sushi run (e.g. vars.teacher=/path/to/DeepSeek-V2-Lite);
# a second `make run` reuses the teacher and resumes the student: rm -rf runs/distill to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
exec build/bin/sushi run pipelines/distill.yaml "$@"
