#!/usr/bin/env bash
# Everything a lent GPU machine should run, in one call: probe, GPU suite, GPU-marked tests.
#
# Here (once):     make gpu-wheels gpu-photos  # onnxslim (the one dependency the GPU image lacks) into .whl/,
#                                             # 82 real ants/bees photos into .photos/ (the shared data stays here)
# On the machine:  bash benchmarks/gpu_device.sh [gpu_suite.py args]
#                  (device tool: carry [".whl", ".photos"], timeout_s 600)
#
# A lent machine gives about 15 minutes in all, start included, and one call at most 10: this script is
# sized to fit one call. The suite goes first (its goal is what only a GPU can show), stops starting work
# after SUITE_BUDGET_S (360 s) and is killed at SUITE_TIMEOUT_S (420 s); it writes each (model, batch) as
# soon as it is measured, goal model and batch first, so a cut run still brings back the goal. The tests
# then get TESTS_TIMEOUT_S (120 s).
#
# The image has torch, timm, onnx, onnxruntime (CPU) and cuda-python but no TensorRT and no network, so
# edgetl runs from the checkout (PYTHONPATH) rather than a pip install that would try to resolve packages.
# Results: $OUT/{probe.txt,suite.log,gpu_tests.txt,results.tgz}; `tar xzf results.tgz` in the repo root here
# puts them in benchmarks/results/<gpu>/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu_device}
SUITE_TIMEOUT_S=${SUITE_TIMEOUT_S:-420}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .photos/train ] && export EDGETL_HYMENOPTERA=${EDGETL_HYMENOPTERA:-$PWD/.photos}
bash benchmarks/gpu_probe.sh 2>&1 | tee "$OUT/probe.txt"
timeout "$SUITE_TIMEOUT_S" python3 benchmarks/gpu_suite.py --budget-s "${SUITE_BUDGET_S:-360}" "$@" 2>&1 \
  | tee "$OUT/suite.log"
suite=${PIPESTATUS[0]}
tar czf "$OUT/results.tgz" benchmarks/results
timeout "${TESTS_TIMEOUT_S:-120}" python3 -m pytest -q -p no:cacheprovider -m "gpu or trt" tests/test_runtime.py \
  tests/test_runtime_trt.py tests/test_bench.py 2>&1 | tee "$OUT/gpu_tests.txt"
find benchmarks/results -name summary.md -newer "$OUT/probe.txt" -exec cat {} \;  # last in the reply's tail
exit "$suite"
