#!/usr/bin/env bash
# Issue 19's GPU session in one call (< 8 minutes on one H200): the test subset under
# JAX_PLATFORMS=cuda, then the train-step MFU and sampler tables (benchmarks/gpu_suite.py).
#
#   bash benchmarks/gpu_suite.sh            # results under $OUT (default benchmarks/out/)
#
# Writes $OUT/pytest.txt (the test log), $OUT/gpu_suite.json (device, versions, settings, both
# tables) and $OUT/summary.txt. Wheels in .whl/ (the repo's dependencies, for a machine without
# them) are installed first when present. The whole suite (not only the subset) on the GPU:
#   JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -q -p no:randomly -n 4
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/out}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  pip install -q .whl/*.whl > "$OUT/pip.txt" 2>&1 || echo "pip install failed (see pip.txt)"
fi
# Several pytest workers share the one GPU: allocate on demand instead of 75% each.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
start=$(date +%s)
timeout "${TEST_TIMEOUT:-240}" env JAX_PLATFORMS=cuda python -m pytest -q -p no:randomly \
  -n "${TEST_WORKERS:-4}" tests/sampling tests/models tests/training > "$OUT/pytest.txt" 2>&1
test_rc=$?
tests_s=$(( $(date +%s) - start ))
# The benchmarks get the whole GPU (the planner reads the allocator's limit).
timeout "${BENCH_TIMEOUT:-220}" env JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=true \
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 \
  python benchmarks/gpu_suite.py --out="$OUT/gpu_suite.json" > "$OUT/gpu_suite.txt" 2>&1
bench_rc=$?
{
  echo "tests: exit $test_rc in ${tests_s}s: $(tail -n 1 "$OUT/pytest.txt")"
  echo "benchmarks: exit $bench_rc in $(( $(date +%s) - start - tests_s ))s"
  grep -E "^(FAILED|ERROR)" "$OUT/pytest.txt" | head -40
} | tee "$OUT/summary.txt"
