#!/usr/bin/env bash
# `make run`: the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
exec build/bin/sushi train --config configs/train/tiny-cpu.yaml "$@"
