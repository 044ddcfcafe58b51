#!/usr/bin/env bash
# One GPU session, one call (budget: ≤ 9 minutes on one H100/H200): every GPU result file of issue 20.
# Usage (repository root, project venv): bash benchmarks/gpu_session.sh
# Writes benchmarks/results/*-<gpu-slug>.json; commit them with the commit that produced them.
# Each step has its own time limit so a slow one cannot eat the others; a failure is logged and skipped.
set -u
PY=${PY:-.venv/bin/python}
export PYTHONPATH=${PYTHONPATH:-.}
run() {  # run <seconds> <module> [args...]
  local limit=$1; shift
  echo "=== $* (limit ${limit}s) $(date +%T)"
  timeout --signal=INT "$limit" "$PY" -m "$@" || echo "!!! $1 failed or timed out (rc=$?)"
}
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader || true
# deterministic counts first (seconds; same numbers as on the CPU, a cross-check)
run 60  benchmarks.hvp_to_target
# update rules vs the engine's fastest plain step (compiled/graphed SGD), ≥ 50 steps per timing
run 150 benchmarks.update_rules --compile reduce-overhead
run 90  benchmarks.fisher_reg   # TODO(next session): add a fisher-hvp row (FisherRule(gradient="hvp"))
# curvature vs PyHessian at equal accuracy (trained model, float64 reference, TF32 off for the reference)
run 150 benchmarks.curvature --max-trace-samples 200
# training throughput of the engine, WRN-28-10 included in the compiled rows
run 120 benchmarks.train_throughput --models wrn28_10 resnet20
ls -l benchmarks/results/*.json
