"""One runtime over every artifact edgetl makes: PyTorch run dirs, ONNX files, TensorRT engines, AOTI packages.

``load(path, device=…, provider=…)`` returns a :class:`~edgetl.runtime.base.Runner`; backends import their
libraries (torch, onnxruntime, tensorrt, cuda-python) only when an artifact of their kind is opened.
"""

from edgetl.runtime.base import Runner, RunnerInfo
from edgetl.runtime.loader import runner_from_artifact

load = runner_from_artifact

__all__ = ["Runner", "RunnerInfo", "load", "runner_from_artifact"]
