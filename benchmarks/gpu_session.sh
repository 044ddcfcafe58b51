#!/usr/bin/env bash
# One GPU session, one call (≤ 9 minutes on one H100/H200): every GPU result file of issue 20.
# Usage (repository root): bash benchmarks/gpu_session.sh      [PY=python3 to use the image's python]
# Writes benchmarks/results/{update_rules,fisher_reg,curvature,train_throughput}-<gpu-slug>.json (each
# rewritten after every network, so a step stopped by its limit keeps the networks it finished) and, with
# $OUT set (the device tool), copies them and the log there. Commit them with the commit that produced them.
# Every timing follows benchmarks/README.md "How each number is taken": ≥ 50 consecutive steps between two
# CUDA events, compile/graph capture/warm-up outside, candidates interleaved over 3 rounds, median + min/max,
# ratios to the engine's fastest plain step. The CPU-only benchmarks (hvp_to_target, levers) are not rerun.
# Budget (s): update_rules 160 + fisher_reg 150 + curvature 100 + train_throughput 120 = 530, plus start-up.
set -u
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH=${PYTHONPATH:-.} FLATLIB_QUIET=1
"$PY" -c "import pyhessian, mlxtend" 2>/dev/null || echo "!!! pyhessian or mlxtend missing: curvature needs both (carry them)"
run() {  # run <seconds> <module> [args...]
  local limit=$1; shift
  echo "=== $* (limit ${limit}s) $(date +%T)"
  timeout --signal=INT --kill-after=10 "$limit" "$PY" -m "$@" || echo "!!! $1 failed or timed out (rc=$?)"
}
nvidia-smi --query-gpu=name,memory.used,utilization.gpu,clocks.sm --format=csv,noheader || true
# update rules vs the engine's fastest plain step: WRN-28-10 and ResNet-20, SGD/SAM graphed (compile="auto"),
# PoF eager at search batch 256 and 32
run 160 benchmarks.update_rules --models wrn28_10 resnet20 --steps 50 --repeats 3
# Fisher regularizer (difference, ghost BN, gradient="hvp") vs the graphed plain step, WRN-28-10 first
run 150 benchmarks.fisher_reg --models wrn28_10 resnet20 --candidates plain-eager plain fisher fisher-ghost fisher-hvp \
  --steps 50 --repeats 3
# curvature vs PyHessian at equal accuracy: trained ResNet-20, float64 reference with TF32 off
run 100 benchmarks.curvature --repeats 3
# training throughput of the engine (bf16 eager and CUDA graphs) vs the plain loop, 3 timed epochs of 50 steps
run 120 benchmarks.train_throughput --models wrn28_10 resnet20 --variants engine engine-cudagraphs --steps 50 --repeats 3
ls -l benchmarks/results/*.json
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT/results" && cp benchmarks/results/*.json "$OUT/results/"; fi
