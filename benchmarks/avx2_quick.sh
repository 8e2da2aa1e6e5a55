#!/usr/bin/env bash
# The quick profile with torch's and oneDNN's AVX2 kernels, on a machine that has AVX512:
# how long `make report` takes on an AVX2-only CPU, measured rather than projected.
#
#   bash benchmarks/avx2_quick.sh                  # into runs/avx2, which must not hold a run yet
#   bash benchmarks/avx2_quick.sh /tmp/avx2 -p precision fp32  # runner options after the folder
#
# `precision: auto` then sees AVX2 kernels (helpers.core.runtime.native_cpu_bf16), times only
# fp32 and fp32 + channels_last, and caches those speeds under their own key. The clock, cores
# and memory stay this machine's: on a 2-core AVX512-BF16 host the AVX2 kernels trained at
# ~26 img/s, against ~18-24 on the AVX2-only machines, so rescale the training time.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${1:-runs/avx2}"
shift || true
if [ -n "$(ls -A "$run_dir" 2>/dev/null)" ]; then
  echo "error: $run_dir is not empty; give a new folder (avx2_quick.sh times a run from scratch)" >&2
  exit 2
fi
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
python -c 'import torch; print("torch CPU kernels:", torch.backends.cpu.get_cpu_capability())'
python -m helpers.run --run-dir "$run_dir" "$@"
