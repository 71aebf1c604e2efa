#!/usr/bin/env bash
# The loss part of benchmarks/gpu.sh, for a short GPU session (run from the repository root):
#   benchmarks/gpu_loss.sh OUT_DIR
#   1. TUFL vs the literal reference, 19 classes x 512x1024, batch 2: fused (Triton kernels),
#      compiled, fused + CUDA graphs, compiled + CUDA graphs; then a profile of each
#   2. the threshold statistic alone: the sort against the radix-selection kernels
#      (benchmarks/threshold_statistic.py)
#   3. the CUDA tests of the loss (Triton kernels, CUDA graphs, CPU agreement), the host-time
#      phases of a graphed call (benchmarks/loss_host_phases.py), then the other CUDA tests
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
bench=($py -m tufl benchmark loss --device cuda --warmup 3 --repeats 20)
step timeout 240 "${bench[@]}" --cuda-graphs --compile --json "$out/loss_cuda.json" --profile "$out/loss_cuda_profile.txt"
step timeout 150 $py benchmarks/threshold_statistic.py > "$out/threshold_statistic.txt"
loss_tests="triton or graph or matches_cpu or bf16 or refuse"
step timeout 200 $py -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_data_views.py -k "cuda and ($loss_tests)" \
    --junitxml="$out/cuda_loss_tests.xml"
step timeout 90 $py benchmarks/loss_host_phases.py --compile --steps 200 > "$out/host_phases.txt"
step timeout 200 $py -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "not ($loss_tests)" \
    --junitxml="$out/cuda_other_tests.xml"
exit $status
