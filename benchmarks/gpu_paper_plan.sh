#!/usr/bin/env bash
# Issue 19, one GPU call (budget ≤ 9 minutes on one H100/H200): the paper profile on the GPU.
#   1. WRN-28-10 λ1 by Lanczos on 50k fabricated CIFAR images, timed (HVP chunks on the GPU, basis plan)
#   2. flatlib plan --profile paper --measure: s/step of every training shape, s per image-HVP, device-hours
#   3. the dry run at the paper's batch sizes: every notebook, fabricated data (256 images per split)
# Usage (repository root, project venv): bash benchmarks/gpu_paper_plan.sh
# Writes benchmarks/results/{plan,lambda1_wrn}-<gpu-slug>.json (commit them) and, under $OUT if set,
# the logs and the dry run's executed notebooks. Each step has its own time limit; a failure is logged
# and the next step still runs.
set -u
PY=${PY:-.venv/bin/python}
export PYTHONPATH=${PYTHONPATH:-.}
LOGS=${OUT:-/tmp/gpu_paper_plan}
mkdir -p "$LOGS"
step() {  # step <seconds> <name> <command...>
  local limit=$1 name=$2; shift 2
  echo "=== $name (limit ${limit}s) $(date +%T)"
  timeout --signal=INT "$limit" "$@" > "$LOGS/$name.log" 2>&1; local rc=$?
  tail -n 40 "$LOGS/$name.log"
  [ $rc -eq 0 ] || echo "!!! $name failed or timed out (rc=$rc)"
}
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
# 1. FF's heaviest measure: 100 Lanczos iterations over 50k images would take longer than this budget, so it
#    stops after 100 s and projects 100 iterations from the measured time per iteration
step 150 lambda1 "$PY" -m benchmarks.lambda1_wrn --images 50000 --batch 1000 --iters 100 --max-seconds 100
# 2. the cost plan; eager steps (compile=0 inside the plan's probes) so ~60 shapes fit the budget: an upper
#    bound for the shapes the engine compiles (CUDA graphs), see the Performance page's train_throughput rows
FLATLIB_DRYRUN_COMPILE=0 step 210 plan "$PY" -m flatlib.cli plan --profile paper --measure --steps 3
# 3. the dry run at full batch sizes, 4 workers on the one GPU, eager (compiling every shape would not fit)
rm -rf results-dryrun/paper _build/executed/dryrun-paper
FLATLIB_DRYRUN_BATCH=0 FLATLIB_DRYRUN_IMAGES=256 FLATLIB_DRYRUN_STORED=1 FLATLIB_DRYRUN_COMPILE=0 \
  step 170 dryrun "$PY" -m flatlib.cli run-all --profile paper --dry-run --gpus 0 --jobs 4
cp -r _build/executed/dryrun-paper "$LOGS/" 2>/dev/null || true
ls -l benchmarks/results/plan-*.json benchmarks/results/lambda1_wrn-*.json 2>/dev/null
