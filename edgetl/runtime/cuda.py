"""Lazy loaders and small helpers for TensorRT and cuda-python (``cuda.bindings``), shared by the engine
runner, the engine builder and the GPU suite.

Nothing here imports TensorRT or cuda-python at module level: ``import edgetl`` and every CPU path work
without them, and each helper raises a one-line error saying how to install what is missing.
"""

from __future__ import annotations

import ctypes
import importlib
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from edgetl.errors import EdgetlError

INSTALL_HINT = ("TensorRT is required to run .engine/.plan files: `pip install tensorrt` (x86-64 with an NVIDIA GPU) "
                "or use the TensorRT of JetPack; build engines on the target with `edgetl export <run> --engine`")


def tensorrt_module() -> ModuleType | None:
    """The real TensorRT module, or None: the stubs-only package is a namespace without ``Builder``/``Runtime``."""
    try:
        module = importlib.import_module("tensorrt")
    except ImportError:
        return None
    return module if hasattr(module, "Builder") and hasattr(module, "Runtime") else None


def import_tensorrt() -> ModuleType:
    """The real TensorRT module, or a one-line error saying how to get it."""
    module = tensorrt_module()
    if module is None:
        raise EdgetlError(INSTALL_HINT)
    return module


def import_cudart() -> Any:
    """cuda-python's runtime API (``cuda.bindings.runtime``); never pycuda."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        raise EdgetlError("cuda-python is required for TensorRT engines: `pip install cuda-python`") from None


def cuda_check(result: Any) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple, raising on an error code."""
    cudart = import_cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorString(err)[1]
        raise EdgetlError(f"CUDA error {err}: {name.decode() if isinstance(name, bytes) else name}; check the GPU "
                          "with `nvidia-smi` (out of memory, or a previous error left the device unusable)")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class Gpu(NamedTuple):
    """What an engine is bound to: the GPU's name and compute capability, and whether it is a Jetson's."""

    name: str
    capability: str  # "major.minor"
    integrated: bool  # Jetson (integrated) GPUs support no hardware-compatible engines


def gpu_identity(device: int) -> Gpu:
    """The GPU ``device`` is, read with cuda-python."""
    cudart = import_cudart()
    prop = cuda_check(cudart.cudaGetDeviceProperties(device))
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return Gpu(name, f"{prop.major}.{prop.minor}", bool(prop.integrated))


def set_device(device: int) -> None:
    """Make ``device`` current; a cuda-python too new for the driver gets the fix, not a bare error code."""
    cudart = import_cudart()
    err = cudart.cudaSetDevice(device)[0]
    if err == cudart.cudaError_t.cudaErrorInsufficientDriver:
        raise EdgetlError(f"cuda-python {_cuda_python_version()} needs a newer NVIDIA driver than this machine has; "
                          "install the cuda-python of its CUDA (JetPack 6, CUDA 12.6: "
                          "pip install 'cuda-python>=12.6.1,<13')")
    cuda_check((err,))


def _cuda_python_version() -> str:
    from importlib import metadata

    for dist in ("cuda-python", "cuda-bindings"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "(unknown version)"


def pinned_array(nbytes: int, dtype: np.dtype[Any], count: int) -> tuple[int, np.ndarray]:
    """Page-locked host memory viewed as a numpy array (freed again if the view cannot be made)."""
    cudart = import_cudart()
    ptr = int(cuda_check(cudart.cudaMallocHost(nbytes)))
    try:
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return ptr, np.frombuffer(memoryview(raw).cast("B"), dtype=dtype, count=count)
    except BaseException:
        cudart.cudaFreeHost(ptr)
        raise
