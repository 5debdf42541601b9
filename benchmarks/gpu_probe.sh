#!/usr/bin/env bash
# Copy of ../shared/tools/gpu_probe.sh: the GPU machine sees only this checkout.
# Prints what a GPU machine offers to edgetl: driver, CUDA, Python packages, ONNX Runtime
# providers, TensorRT and cuda-python. Run it first on any GPU machine; paste its output in your note.
set -u
echo "== nvidia-smi"; nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | head -5
echo "== nvcc"; nvcc --version 2>&1 | tail -2
echo "== python"; python3 --version; which python3
python3 - <<'PY'
import importlib
for name in ["torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxscript", "onnxslim",
             "tensorrt", "cuda.bindings", "cuda", "pycuda", "cupy", "modelopt", "polygraphy"]:
    try:
        m = importlib.import_module(name)
        print(f"{name:14s} {getattr(m, '__version__', 'present')}")
    except Exception as e:  # report, never fail
        print(f"{name:14s} missing ({type(e).__name__})")
try:
    import torch
    print("torch.cuda", torch.cuda.is_available(), torch.version.cuda,
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
except Exception as e:
    print("torch.cuda check failed:", e)
try:
    import onnxruntime as ort
    print("onnxruntime providers", ort.get_available_providers())
except Exception as e:
    print("onnxruntime providers: -", type(e).__name__)
PY
echo "== TensorRT libraries on disk"
(ldconfig -p 2>/dev/null | grep -E "nvinfer|nvonnxparser") || echo "none in ldconfig"
find / -xdev \( -name 'libnvinfer.so*' -o -name 'NvInfer.h' -o -name trtexec \) 2>/dev/null | head -10
echo "== done"
