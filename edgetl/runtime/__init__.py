"""One runtime over every artifact edgetl makes: PyTorch run dirs, ONNX files, TensorRT engines, AOTI packages.

``load(path, device=…, provider=…)`` returns a :class:`~edgetl.runtime.base.Runner` with the numerics the
artifact has when deployed (a TensorRT-target INT8 ONNX runs as TensorRT computes it); backends import their
libraries (torch, onnxruntime, tensorrt, cuda-python) only when an artifact of their kind is opened.
``runner_from_artifact`` keeps each library's defaults, as ``edgetl bench`` times them.
"""

from edgetl.runtime.base import Runner, RunnerInfo
from edgetl.runtime.loader import deployed_runner, runner_from_artifact

load = deployed_runner

__all__ = ["Runner", "RunnerInfo", "deployed_runner", "load", "runner_from_artifact"]
