#!/usr/bin/env bash
# Everything a lent GPU machine should run, in one call: probe, GPU-marked tests, GPU suite.
#
# Here (once):     make gpu-wheels            # onnxslim, the one dependency the GPU image lacks, into .whl/
# On the machine:  bash benchmarks/gpu_device.sh [gpu_suite.py args]   (device tool: carry [".whl"])
# e.g.             bash benchmarks/gpu_device.sh --models resnet50      # the goal model first, < 10 min
#
# The image has torch, timm, onnx, onnxruntime (CPU) and cuda-python but no TensorRT and no network, so
# edgetl runs from the checkout (PYTHONPATH) rather than a pip install that would try to resolve packages.
# Results: $OUT/{probe.txt,gpu_tests.txt,suite.log,results.tgz}; `tar xzf results.tgz` in the repo root here
# puts them in benchmarks/results/<gpu>/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu_device}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
bash benchmarks/gpu_probe.sh 2>&1 | tee "$OUT/probe.txt"
python3 -m pytest -q -p no:cacheprovider -m "gpu or trt" tests/test_runtime.py tests/test_runtime_trt.py tests/test_bench.py \
  2>&1 | tee "$OUT/gpu_tests.txt"
# The device tool ends a call at 10 minutes: stop the suite first so finished models' results come back.
timeout "${SUITE_TIMEOUT_S:-480}" python3 benchmarks/gpu_suite.py "$@" 2>&1 | tee "$OUT/suite.log"
suite=${PIPESTATUS[0]}
tar czf "$OUT/results.tgz" benchmarks/results
exit "$suite"
