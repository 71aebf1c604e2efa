#!/usr/bin/env bash
# All GPU checks and figures, run from the repository root on a CUDA machine with the
# dependencies installed:  benchmarks/gpu.sh OUT_DIR
#   1. benchmarks/gpu_loss.sh: the CUDA tests and the TUFL loss benchmark (with profiles)
#   2. inference at 1024x2048, both networks, fp32 and mixed precision
#   3. training-step time and peak memory, both networks, every mode, at the shipped crops,
#      with each TUFL backend (the whole-iteration figures that decide which backends stay)
#   4. the whole (CPU) test suite, as a check of this machine's Python and torch
set -uo pipefail
out=${1:?usage: benchmarks/gpu.sh OUT_DIR}
status=0
"$(dirname "$0")/gpu_loss.sh" "$out" || status=1
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
run() { echo "== $*"; "$@" || { echo "!! failed: $*"; status=1; }; }

run $py -m tufl benchmark inference --device cuda --warmup 5 --repeats 30 --amp --json "$out/inference_cuda.json"
for net in "deeplabv2 512 512" "bisenet 640 1280"; do
  read -r arch height width <<< "$net"
  run $py -m tufl benchmark train --device cuda --amp --archs "$arch" --height "$height" --width "$width" --batch 2 \
      --warmup 3 --repeats 10 --json "$out/train_${arch}_cuda.json"
  for backend in torch fused triton; do
    run $py -m tufl benchmark train --device cuda --amp --archs "$arch" --modes stage1 --height "$height" \
        --width "$width" --batch 2 --warmup 3 --repeats 10 --set "loss.tufl.backend=$backend" \
        --json "$out/train_${arch}_stage1_${backend}_cuda.json"
  done
done
if [ -z "${SKIP_SUITE:-}" ]; then
  workers=$($py -c "import os; print(min(8, os.cpu_count() or 1))")
  if $py -c "import xdist" 2>/dev/null; then par=(-n "$workers"); else par=(); fi
  run timeout 300 $py -m pytest -q -p no:cacheprovider "${par[@]}" tests
fi
exit $status
