#!/usr/bin/env bash
# Everything a lent GPU machine should run, in one call: probe, GPU suite, GPU-marked tests.
#
# Here (once):     make gpu-photos   # 82 real ants/bees photos into .photos/ (the shared data stays here)
#                  make gpu-wheels   # only for an image without onnxslim (the H100 image of Nov 2026 has it)
# On the machine:  bash benchmarks/gpu_device.sh [gpu_suite.py args]
#                  (device tool: carry [".photos"] (+ ".whl"), timeout_s within the lease's time left)
#
# A lent machine gives about 15 minutes in all, start included, and one call at most 10: this script is
# sized to fit one call. The suite goes first (its goal is what only a GPU can show), stops starting work
# after SUITE_BUDGET_S (360 s) and is killed at SUITE_TIMEOUT_S (420 s); it writes each (model, batch) as
# soon as it is measured, goal model and batch first, straight under $OUT, so a run cut short (even by the
# device tool's own limit) still brings back all it measured. The tests then get TESTS_TIMEOUT_S (120 s);
# SKIP_TESTS=1 leaves them out (a second call of a session: they ran in the first).
#
# The image has torch, timm, onnx, onnxruntime (CPU) and cuda-python but no TensorRT and no network, so
# edgetl runs from the checkout (PYTHONPATH) rather than a pip install that would try to resolve packages.
# Results: $OUT/{probe.txt,suite.log,gpu_tests.txt} and the suite's folder: `--out DIR` is written to
# $OUT/DIR (default $OUT/results), so `--out benchmarks/results/<gpu>/<run>` comes back at that path under
# the device tool's files_at; copy it into the checkout from there.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu_device}
SUITE_TIMEOUT_S=${SUITE_TIMEOUT_S:-420}
mkdir -p "$OUT"
args=() out_given=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) args+=(--out "$OUT/$2"); out_given=1; shift 2 ;;
    --out=*) args+=(--out "$OUT/${1#--out=}"); out_given=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[ "$out_given" = 1 ] || args+=(--out "$OUT/results")
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .photos/train ] && export EDGETL_HYMENOPTERA=${EDGETL_HYMENOPTERA:-$PWD/.photos}
bash benchmarks/gpu_probe.sh 2>&1 | tee "$OUT/probe.txt"
timeout "$SUITE_TIMEOUT_S" python3 benchmarks/gpu_suite.py --budget-s "${SUITE_BUDGET_S:-360}" "${args[@]}" 2>&1 \
  | tee "$OUT/suite.log"
suite=${PIPESTATUS[0]}
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout "${TESTS_TIMEOUT_S:-120}" python3 -m pytest -q -p no:cacheprovider -m "gpu or trt" tests/test_runtime.py \
    tests/test_runtime_trt.py tests/test_bench.py 2>&1 | tee "$OUT/gpu_tests.txt"
fi
find "$OUT" -name summary.md -newer "$OUT/probe.txt" -exec cat {} \;  # last in the reply's tail
exit "$suite"
