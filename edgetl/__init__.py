"""edgetl: fine-tune timm image classifiers and ship them as verified ONNX / TensorRT artifacts.

Importing the package is cheap: torch, onnxruntime, TensorRT and cuda-python are imported lazily,
inside the functions that need them.
"""

__version__ = "0.1.0"

from edgetl.errors import EdgetlError

__all__ = ["EdgetlError", "__version__"]
