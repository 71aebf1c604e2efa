#!/usr/bin/env bash
# GPU checks and figures, run from the repository root on a CUDA machine with the
# dependencies installed:  benchmarks/gpu.sh OUT_DIR
#   1. the CUDA tests (CPU/GPU agreement, bf16 and fp16 mixed-precision training, resume)
#   2. TUFL fused (eager and torch.compile) vs literal reference, 19 classes x 512x1024, batch 2,
#      then a profile of both (operator tables, kernel launches per step)
#   3. inference at 1024x2048, both networks, fp32 and mixed precision
#   4. training-step time and peak memory, both networks, every mode, at the shipped crops
#   5. the whole (CPU) test suite, as a check of this machine's Python and torch
set -uo pipefail
out=${1:?usage: benchmarks/gpu.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
step() { echo "== $*"; "$@" || { echo "!! failed: $*"; status=1; }; }

{ $py -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } | tee "$out/env.txt"
step $py -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_data_views.py -k cuda \
    --junitxml="$out/cuda_tests.xml"
step $py -m tufl benchmark loss --device cuda --warmup 3 --repeats 20 --compile --json "$out/loss_cuda.json" \
    --profile "$out/loss_cuda_profile.txt"
step $py -m tufl benchmark inference --device cuda --warmup 5 --repeats 30 --amp --json "$out/inference_cuda.json"
step $py -m tufl benchmark train --device cuda --amp --archs deeplabv2 --height 512 --width 512 --batch 2 \
    --warmup 3 --repeats 10 --json "$out/train_deeplabv2_cuda.json"
step $py -m tufl benchmark train --device cuda --amp --archs bisenet --height 640 --width 1280 --batch 2 \
    --warmup 3 --repeats 10 --json "$out/train_bisenet_cuda.json"
if [ -z "${SKIP_SUITE:-}" ]; then
  workers=$($py -c "import os; print(min(8, os.cpu_count() or 1))")
  if $py -c "import xdist" 2>/dev/null; then par=(-n "$workers"); else par=(); fi
  step timeout 300 $py -m pytest -q -p no:cacheprovider "${par[@]}" tests
fi
exit $status
