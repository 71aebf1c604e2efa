#!/usr/bin/env bash
# GPU figures, run from the repository root on a CUDA machine with the dependencies installed:
#   benchmarks/gpu.sh OUT_DIR
# The default run (about 6 to 8 minutes on an H200) measures issue 20's items 1 and 3, before and
# after, DeepLabV2 stage one at 512x512, batch 2 per domain, bf16 (the shipped config):
#   1. whole iterations (tufl benchmark train --end-to-end --compare): generated GTA5/Cityscapes
#      files at native sizes, the config's loader workers; "before" = original files, strong
#      view on the workers, foreach SGD, no channels_last (with BEFORE_SRC: the code before the
#      issue itself); "after" = prepared copy, strong view on the device, fused SGD, channels_last
#   2. the network step alone (tufl benchmark train), old vs new optimiser/channels_last settings
#      (and the code before the issue, with BEFORE_SRC)
#   then the CUDA tests (pytest -m cuda), and
#   3. whole iterations with train.compile on (after settings), then the step alone compiled
# Steps that would start after BUDGET_S seconds (default 450) are skipped and named.
# Environment:
#   BEFORE_SRC  a folder holding src/ (and configs/) of the code before issue 20; make it here with
#               `git archive BASE_COMMIT src configs | tar -x -C .bench_before` and carry it
#   FULL=1      afterwards also the older figures (benchmarks/gpu_loss.sh, inference, every
#               network/mode/backend step, the test suite): far beyond 8 minutes
#   PYTHON      the interpreter (default python3)
#   SMOKE=1     a dry run of the same steps in seconds (tiny sizes, DEVICE=cpu works, no compile)
# Output (few files, so that all of them come back from a lent machine): OUT_DIR/env.txt,
# OUT_DIR/log.txt (everything printed), e2e_compare.json, e2e_compile.json, step_rows.json.
set -uo pipefail
out=${1:?usage: benchmarks/gpu.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
budget=${BUDGET_S:-450}
before_src=${BEFORE_SRC:-}
status=0
work=$(mktemp -d "${TMPDIR:-/tmp}/tufl-gpu-XXXXXX")
trap 'rm -rf "$work"' EXIT
exec > >(tee -a "$out/log.txt") 2>&1

step() {  # step TIMEOUT_S CMD...: run unless the budget is spent
  local limit=$1; shift
  if (( SECONDS + 30 > budget )); then echo "!! skipped (budget of ${budget} s spent): $*"; status=1; return; fi
  echo "== [${SECONDS} s] $*"
  timeout "$limit" "$@" || { echo "!! failed: $*"; status=1; }
}

{ $py -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nproc; } 2>&1 | tee "$out/env.txt"
if [ -n "$before_src" ] && [ ! -d "$before_src/src/tufl" ]; then
  echo "!! BEFORE_SRC=$before_src holds no src/tufl: comparing settings within today's code only"; before_src=""
fi

config=configs/gta5_cityscapes/deeplabv2_stage1.yaml
device=${DEVICE:-cuda}
fused=true; [ "$device" = cpu ] && fused=auto
old=(--set optim.fused=false --set train.channels_last=false)
new=(--set optim.fused=$fused --set train.channels_last=true)
e2e=(--end-to-end --device "$device" --config "$config" --images 16 --iters 30 --out-dir "$work/e2e")
step_args=(--device "$device" --amp --archs deeplabv2 --modes stage1 --height 512 --width 512 --batch 2
           --warmup 5 --repeats 20)
if [ -n "${SMOKE:-}" ]; then
  e2e+=(--images 2 --iters 1 --warmup 1 --workers 0 --size-divisor 32)
  step_args+=(--height 32 --width 32 --warmup 1 --repeats 1)
fi

# 1. whole iterations, before vs after (the prepared copy is written first, not timed)
if [ -n "$before_src" ]; then  # the code before the issue, with its own config: nothing to set
  before=(--before-src "$before_src/src")
else
  before=(--before-set optim.fused=false --before-set train.channels_last=false)
fi
step 240 $py -m tufl benchmark train "${e2e[@]}" --compare "${before[@]}" \
    --after-set optim.fused=$fused --after-set train.channels_last=true --json "$out/e2e_compare.json"

# 2. the step alone: old vs new settings (and the code before the issue)
step 90 $py -m tufl benchmark train "${step_args[@]}" "${old[@]}" --json "$work/step_old_settings.json"
step 90 $py -m tufl benchmark train "${step_args[@]}" "${new[@]}" --json "$work/step_new_settings.json"
if [ -n "$before_src" ]; then
  step 90 env PYTHONPATH="$before_src/src" $py -m tufl benchmark train "${step_args[@]}" \
      --json "$work/step_before_code.json"
fi

# the CUDA tests (the step without host synchronisation, device views, losses, mixing, evaluation)
[ -n "${SMOKE:-}" ] || step 150 $py -m pytest -q -p no:cacheprovider -m cuda tests

# the cost of the weight check (WeightGuard) on the GPU, at the step benchmark's size
if [ -n "${SMOKE:-}" ]; then guard_args=(--archs bisenet --size 32 32 --repeats 4); else guard_args=(--size 512 512); fi
step 90 env PYTHONPATH="$(pwd)/src${PYTHONPATH:+:$PYTHONPATH}" $py benchmarks/weight_guard_cost.py --device "$device" \
    "${guard_args[@]}"

# 3. compiled: whole iterations (after settings; reuses the generated data and prepared copy), step alone
[ -n "${SMOKE:-}" ] || step 240 $py -m tufl benchmark train "${e2e[@]}" "${new[@]}" --set train.compile=true \
    --set "data.prepared_dir=$work/e2e/prepared" --set data.target_views.strong_view=device \
    --json "$out/e2e_compile.json"
[ -n "${SMOKE:-}" ] || step 150 $py -m tufl benchmark train "${step_args[@]}" "${new[@]}" --set train.compile=true \
    --json "$work/step_new_settings_compiled.json"

shopt -s nullglob
$py - "$out/step_rows.json" "$work"/step_*.json <<'EOF' || status=1
import json, sys
rows = {}
for path in sys.argv[2:]:
    name = path.rsplit("/", 1)[-1].removeprefix("step_").removesuffix(".json")
    rows[name] = json.load(open(path))
json.dump(rows, open(sys.argv[1], "w"), indent=1)
for name, (row, *_) in rows.items():
    print(f"step only, {name}: {row['seconds_per_iter']:.4f} s/iter ({1 / row['seconds_per_iter']:.2f} it/s)")
EOF
echo "== issue 20 figures done in ${SECONDS} s"

if [ -n "${FULL:-}" ]; then
  "$(dirname "$0")/gpu_loss.sh" "$out" || status=1
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
  workers=$($py -c "import os; print(min(8, os.cpu_count() or 1))")
  if $py -c "import xdist" 2>/dev/null; then par=(-n "$workers"); else par=(); fi
  run timeout 300 $py -m pytest -q -p no:cacheprovider "${par[@]}" tests
fi
exit $status
