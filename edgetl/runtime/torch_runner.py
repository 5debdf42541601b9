"""PyTorch backend: the trained model itself, eager or compiled, FP32 or FP16, on CPU or CUDA.

It is the reference every other artifact is compared with, and the baseline of every speed-up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.card import ModelCard
from edgetl.errors import EdgetlError
from edgetl.runtime.base import Runner, RunnerInfo

if TYPE_CHECKING:
    import torch
    from torch import nn

# Inductor options of edgetl's own modes (torch.compile takes a mode or options, not both), for inference only,
# with CUDA graphs on CUDA as in reduce-overhead. "frozen": freezing (weights become constants, BatchNorm
# folds into the convolutions). "frozen-max-autotune": freezing with autotuned kernels; with channels-last
# input, max-autotune lowers 1x1 convolutions to matmuls and tunes them (pytorch/pytorch#107004: a large
# gain on ResNet inference). It compiles for minutes, not seconds.
OPTION_MODES: dict[str, dict[str, Any]] = {"frozen": {"freezing": True},
                                           "frozen-max-autotune": {"freezing": True, "max_autotune": True}}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", *OPTION_MODES)
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune", *OPTION_MODES)  # on CUDA these replay CUDA graphs
# Compiled graphs of one model class a process may hold. torch's own limit (8) counts the graphs of every
# compiled copy of the class together, and past it dynamo runs the model eagerly without a word: a
# "compiled" figure would be eager's. Up to this many, each new batch size compiles; past it, an error.
COMPILED_GRAPHS = 64


def resolve_device(device: str | None) -> str:
    """'cpu' or 'cuda[:n]'; None picks CUDA when present. A missing GPU is a one-line error."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgetlError(f"--device {device}: no CUDA GPU visible to PyTorch; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise EdgetlError(f"unknown device {device!r}; choose cpu or cuda")
    return device


class TorchRunner(Runner):
    """Runs an ``nn.Module`` under ``inference_mode``.

    ``compile`` is False, True (mode "default") or a torch.compile mode; "reduce-overhead" captures
    CUDA graphs per batch size. ``half`` casts weights and inputs to float16; logits come back float32.
    ``tf32`` None keeps PyTorch's process-wide choice (TF32 convolutions on CUDA by default); True or False
    sets it for this runner's calls alone, so IEEE FP32 and TF32 can be timed side by side.
    """

    def __init__(self, model: nn.Module, card: ModelCard, device: str | None = "cpu", half: bool = False,
                 channels_last: bool = False, compile: bool | str = False, threads: int | None = None,
                 cuda_graph: bool = False, tf32: bool | None = None) -> None:
        import torch

        if threads:  # process-wide in PyTorch: set it to match the other backends in a CPU comparison
            torch.set_num_threads(threads)
        self.card = card
        self.device = resolve_device(device)
        if half and self.device == "cpu":
            raise EdgetlError("--half needs a CUDA device (FP16 convolutions are not supported on CPU); drop --half")
        self.dtype = torch.float16 if half else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = model.eval().to(self.device, dtype=self.dtype).to(memory_format=self.memory_format)
        mode = self._compile_mode(compile)
        self.model: Callable[[torch.Tensor], torch.Tensor] = model
        if mode in OPTION_MODES:
            options = {**OPTION_MODES[mode], "triton.cudagraphs": self.device != "cpu"}
            self.model = torch.compile(model, dynamic=False, options=options)
        elif mode is not None:
            self.model = torch.compile(model, mode=mode, dynamic=False)
        if cuda_graph and (self.device == "cpu" or mode is not None):
            raise EdgetlError("cuda_graph needs a CUDA device and no torch.compile (compile mode reduce-overhead "
                              "already captures CUDA graphs)")
        self.cuda_graph = cuda_graph
        self.tf32 = tf32
        self.compiled = mode is not None
        # memory of a CUDA graph's private pool is allocated at capture and cannot be told apart from other models'
        self._graph_pool = self.device != "cpu" and (cuda_graph or mode in CUDA_GRAPH_MODES)
        self._compiled_batches: set[int] = set()
        self._others: int | None = None
        self._graphs: dict[int, tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self.info = RunnerInfo(
            backend="torch", precision="fp16" if half else "fp32", device=self.device.split(":")[0],
            details={"compile": mode, "channels_last": channels_last, "torch": torch.__version__,
                     "mode": "compiled" if mode else ("cuda-graph" if cuda_graph else "eager"),
                     "threads": torch.get_num_threads() if self.device == "cpu" else None,
                     "tf32": None if self.device == "cpu" or half else (
                         bool(torch.backends.cudnn.allow_tf32) if tf32 is None else tf32)},
        )

    @staticmethod
    def _compile_mode(compile: bool | str) -> str | None:
        if compile is False or compile is None:
            return None
        mode = "default" if compile is True else str(compile)
        if mode not in COMPILE_MODES:
            raise EdgetlError(f"unknown torch.compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")
        return mode

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kw: Any) -> TorchRunner:
        """A runner for a run directory or ``.safetensors`` checkpoint (card from ``model.json``)."""
        from edgetl.checkpoint import load_model

        model, card = load_model(path)
        runner = cls(model, card, **kw)
        runner.info.details["path"] = str(path)
        return runner

    def _to_device(self, batch: np.ndarray) -> torch.Tensor:
        import torch

        x = torch.from_numpy(batch)
        if self.device != "cpu":
            x = x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.dtype).contiguous(memory_format=self.memory_format)

    @contextlib.contextmanager
    def _math(self) -> Iterator[None]:
        """PyTorch's TF32 switches set to ``tf32`` for the duration of one call, then restored."""
        if self.tf32 is None:
            yield
            return
        import torch

        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = self.tf32
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

    def _graph(self, n: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """One captured CUDA graph per batch size, with its static input and output tensors."""
        import torch

        if n not in self._graphs:
            with torch.cuda.device(self.device):  # streams and capture on this runner's GPU, not the current one
                static_in = torch.zeros((n, *self.input_shape), device=self.device, dtype=self.dtype)
                static_in = static_in.contiguous(memory_format=self.memory_format)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.inference_mode(), torch.cuda.stream(side), self._math():
                    for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs requires
                        self.model(static_in)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.inference_mode(), torch.cuda.graph(graph), self._math():
                    static_out = self.model(static_in)
            self._graphs[n] = (graph, static_in, static_out)
        return self._graphs[n]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.cuda_graph:
            graph, static_in, static_out = self._graph(x.shape[0])
            static_in.copy_(x)
            graph.replay()
            return static_out
        if self.compiled and x.shape[0] not in self._compiled_batches:
            return self._compile_for(x)
        with torch.inference_mode(), self._math():
            return self.model(x)

    def _compile_for(self, x: torch.Tensor) -> torch.Tensor:
        """The first call at a new batch size, which compiles it, under edgetl's graph limit (see COMPILED_GRAPHS)."""
        import torch
        import torch._dynamo

        limit = max(COMPILED_GRAPHS, int(torch._dynamo.config.cache_size_limit))
        try:
            with torch._dynamo.config.patch(cache_size_limit=limit, fail_on_cache_limit_hit=True), \
                    torch.inference_mode(), self._math():
                out = self.model(x)
        except Exception as exc:
            if type(exc).__name__ not in ("FailOnRecompileLimitHit", "FailOnCacheLimitHit"):
                raise
            raise EdgetlError(f"torch.compile: {self.card.arch} already has {limit} compiled graphs in this process "
                              f"(one per batch size and compiled runner); bench fewer batch sizes or compiled "
                              f"variants per process") from None
        self._compiled_batches.add(x.shape[0])
        return out

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(self._to_device(batch)).float().cpu().numpy()

    def compute_call(self, batch: np.ndarray) -> Callable[[], object]:
        x = self._to_device(self.check_input(batch))
        if self.cuda_graph:
            graph = self._graph(x.shape[0])
            graph[1].copy_(x)
            return graph[0].replay  # input already in the graph's static buffer
        return lambda: self._forward(x)

    def time_calls(self, fn: Callable[[], object], n: int) -> list[float]:
        from edgetl.runtime.timing import time_host, time_torch_cuda

        if self.device == "cpu":
            return time_host(fn, n)
        import torch

        return time_torch_cuda(fn, n, torch.cuda.current_stream(torch.device(self.device)))

    @property
    def timer_name(self) -> str:
        return "cuda-events" if self.device != "cpu" else "perf_counter_ns"

    def peak_memory_mb(self) -> float | None:
        """This model's weights plus its peak activations since ``reset_peak_memory`` (CUDA only).

        PyTorch's peak counts every live tensor in the process, so the other models' memory present at
        the reset is subtracted. None where a CUDA graph replays: its pool, allocated at capture, would be
        subtracted with the other models' memory and the figure would be too low.
        """
        import torch

        if self.device == "cpu" or self._others is None or self._graph_pool:
            return None
        return float(torch.cuda.max_memory_allocated(self.device) - self._others) / 2**20

    def reset_peak_memory(self) -> None:
        import torch

        if self.device == "cpu":
            return
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        model: Any = getattr(self.model, "_orig_mod", self.model)
        tensors = [*model.parameters(), *model.buffers()] if hasattr(model, "parameters") else []
        own = sum(t.numel() * t.element_size() for t in tensors)
        self._others = torch.cuda.memory_allocated(self.device) - own

    def close(self) -> None:
        self._graphs.clear()
        self.__dict__.pop("model", None)
