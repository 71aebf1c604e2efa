#!/usr/bin/env bash
# The loss part of benchmarks/gpu.sh, for a short GPU session (run from the repository root):
#   benchmarks/gpu_loss.sh OUT_DIR
#   1. TUFL's backends (torch, fused, triton) vs the literal reference, 19 classes x 512x1024,
#      batch 2, with a profile of each
#   2. the CUDA tests of the loss (every backend against the CPU, the Triton kernels against
#      the fused backend), then the other CUDA tests (tests marked `cuda`)
set -uo pipefail
out=${1:?usage: benchmarks/gpu_loss.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
step() { echo "== $*"; "$@" || { echo "!! failed: $*"; status=1; }; }

{ $py -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
  $py -c "import triton; print('triton', triton.__version__)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } 2>&1 | tee "$out/env.txt"
step timeout 240 $py -m tufl benchmark loss --device cuda --warmup 3 --repeats 20 \
    --json "$out/loss_cuda.json" --profile "$out/loss_cuda_profile.txt"
step timeout 200 $py -m pytest -q -p no:cacheprovider tests/losses -m cuda --junitxml="$out/cuda_loss_tests.xml"
step timeout 300 $py -m pytest -q -p no:cacheprovider tests -m cuda --ignore=tests/losses \
    --junitxml="$out/cuda_other_tests.xml"
exit $status
