#!/usr/bin/env bash
# GPU check (at most ~8 minutes on one GPU): precision paths, compile, a 20-epoch run on 6,000
# embedded frames; prints one summary table. Needs the venv (make setup) and a CUDA GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
