#!/usr/bin/env bash
# Issue 4's CPU check, as a user runs it: ImageNet EfficientNet-Lite exported to FP32 / FP16 / INT8
# (TensorRT target) and INT8 (CPU target), then `edgetl bench` side by side with PyTorch and `edgetl parity`
# on the 153 held-out ants/bees photos (ImageNet labels 310/309). Run it on a quiet machine.
#
#   bash benchmarks/cpu_imagenet.sh [HYMENOPTERA_DIR] [lite0|lite1]   (default ../shared/data/hymenoptera lite0)
# Writes $RESULTS/efficientnet_<lite>_imagenet{.json,.md,.png,_parity.json} (RESULTS: benchmarks/results/cpu).
# INT8 speed depends on the CPU's int8 dot-product instructions (VNNI): the JSON's host.isa records them.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/hymenoptera}
lite=${2:-lite0}
edgetl=${EDGETL:-.venv/bin/edgetl}
work=build/cpu_imagenet/$lite
res=${RESULTS:-benchmarks/results/cpu}/efficientnet_${lite}_imagenet
mkdir -p "$work" "$(dirname "$res")"
common=("tf_efficientnet_$lite" --weights "efficientnet_$lite" --calib-data "$data/train" --val-data "$data/val" --int8)
export_kept() {  # exit 1 = a parity gate failed with every artifact written: measure them anyway, parity says why
  "$edgetl" export "${common[@]}" "$@" || { rc=$?; [ "$rc" -eq 1 ] || exit "$rc"; }
}
export_kept --fp16 --out "$work/trt"
export_kept --int8-target cpu --fp32-onnx "$work/trt/model.onnx" --out "$work/cpu"  # same FP32 model, not exported again
cp "$work/cpu/model.int8.onnx" "$work/trt/model.int8-cpu.onnx"
artifacts=("$work/trt/pytorch" "$work/trt/model.onnx" "$work/trt/model.fp16.onnx" "$work/trt/model.int8.onnx"
           "$work/trt/model.int8-cpu.onnx")
"$edgetl" bench "${artifacts[@]}" --batch 1,8 --iters 100 --duration 3 --no-progress \
  --json "$res.json" --md "$res.md" --plot "$res.png"
"$edgetl" parity "${artifacts[@]}" --data "$data/val" --json "${res}_parity.json"
