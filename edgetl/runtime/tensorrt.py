"""TensorRT backend over cuda-python: device buffers, pinned host buffers, one stream, optional CUDA graphs.

TensorRT and cuda-python are imported only when an engine is opened. Only name-based tensor APIs are used
(``get_tensor_name`` / ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``), which exist in
TensorRT 10.x (JetPack 6: 10.3, JetPack 7: 10.13+) and 11. This module is type-checked against
tensorrt-stubs; it cannot be executed on a machine without TensorRT and a GPU.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.base import Runner, RunnerInfo
from edgetl.runtime.engine_meta import (
    build_options,
    card_from_engine_metadata,
    compatibility_error,
    engine_metadata,
    rebuild_hint,
)

if TYPE_CHECKING:
    import tensorrt as trt

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
        raise EdgetlError(f"CUDA error {err}: {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_identity(device: int) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of ``device``."""
    cudart = import_cudart()
    prop = cuda_check(cudart.cudaGetDeviceProperties(device))
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return name, f"{prop.major}.{prop.minor}"


@dataclass
class _Buffers:
    """Device + pinned host memory for one execution context, sized for the profile's max batch."""

    d_in: int
    d_out: int
    h_in: np.ndarray
    h_out: np.ndarray
    h_in_ptr: int
    h_out_ptr: int
    stream: Any


def _pinned(nbytes: int, dtype: np.dtype[Any], count: int) -> tuple[int, np.ndarray]:
    cudart = import_cudart()
    ptr = int(cuda_check(cudart.cudaMallocHost(nbytes)))
    raw = (ctypes.c_byte * nbytes).from_address(ptr)
    return ptr, np.frombuffer(memoryview(raw).cast("B"), dtype=dtype, count=count)


class TrtRunner(Runner):
    """Runs a serialized TensorRT engine with a dynamic (or static) batch dimension.

    ``cuda_graph=True`` replays a CUDA graph of the enqueue, captured again whenever the batch size changes
    (a graph fixes shapes and addresses). ``contexts=2`` enables :meth:`infer_pipelined`, which overlaps one
    batch's copies with the other's compute; with a dynamic batch each context needs its own optimization
    profile (``edgetl export --engine --profiles 2``), since TensorRT lets one profile serve one context at a time.
    """

    def __init__(self, path: str | Path, device: int = 0, cuda_graph: bool = False, contexts: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EdgetlError(f"{self.path}: engine file not found; " + rebuild_hint(self.path))
        meta = engine_metadata(self.path)
        self.card = card_from_engine_metadata(self.path, meta)
        try:
            trt_mod, cudart = import_tensorrt(), import_cudart()
        except EdgetlError as exc:  # the libraries are missing here: say which file wanted them
            raise EdgetlError(f"{self.path}: {exc}") from None
        cuda_check(cudart.cudaSetDevice(device))
        gpu, capability = gpu_identity(device)
        reason = compatibility_error(self.path, meta, str(trt_mod.__version__), gpu, capability)
        if reason:
            raise EdgetlError(reason)
        self._trt = trt_mod
        self._logger: trt.ILogger = trt_mod.Logger(trt_mod.Logger.ERROR)
        self._runtime: trt.Runtime = trt_mod.Runtime(self._logger)
        # a version-compatible plan embeds its lean runtime: host code, allowed for engines edgetl recorded
        self._runtime.engine_host_code_allowed = bool(build_options(meta).get("version_compatible"))
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EdgetlError(f"{self.path}: TensorRT {trt_mod.__version__} cannot deserialize it (not an engine, "
                              "or built for another TensorRT version / GPU); " + rebuild_hint(self.path))
        self.engine: trt.ICudaEngine = engine
        self._in_name, self._out_name = self._io_names()
        self._in_dtype = np.dtype(trt_mod.nptype(engine.get_tensor_dtype(self._in_name)))
        self._out_dtype = np.dtype(trt_mod.nptype(engine.get_tensor_dtype(self._out_name)))
        lo, hi = self._batch_range()
        if lo != hi and contexts > engine.num_optimization_profiles:
            raise EdgetlError(f"{self.path}: {contexts} execution contexts need {contexts} optimization profiles and "
                              f"this engine has {engine.num_optimization_profiles}; rebuild it with "
                              f"`edgetl export --engine --profiles {contexts}` or use contexts=1")
        self.cuda_graph = cuda_graph
        self._graph: tuple[int, Any, Any] | None = None  # (batch, graph, executable) of context 0
        self._shape: int | None = None
        self.contexts: list[trt.IExecutionContext] = []
        self.buffers: list[_Buffers] = []
        try:  # a failure part-way frees what was allocated
            for i in range(contexts):
                self.buffers.append(self._allocate(hi))
                self.contexts.append(self._context(i, self.buffers[i]))
        except BaseException:
            self.close()
            raise
        self.info = RunnerInfo(
            backend="tensorrt", precision=str(meta.get("precision", "unknown")), device="cuda",
            input_name=self._in_name, output_name=self._out_name, min_batch=lo, max_batch=hi,
            static_batch=lo == hi, details={"tensorrt": str(trt_mod.__version__), "gpu": gpu,
                                            "compute_capability": capability, "built_on": meta.get("gpu"),
                                            "cuda_graph": cuda_graph, "contexts": contexts, "path": str(self.path)},
        )
        if meta.get("gpu") and meta.get("gpu") != gpu:
            self.info.details["warning"] = f"built on {meta.get('gpu')}, running on {gpu} (sm {capability})"

    def _io_names(self) -> tuple[str, str]:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == self._trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == self._trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgetlError(f"{self.path}: expected one input and one output tensor, found {inputs} -> {outputs}; "
                              "it is not an edgetl classifier engine")
        return inputs[0], outputs[0]

    def _batch_range(self) -> tuple[int, int]:
        dims = self.engine.get_tensor_shape(self._in_name)
        shape = [int(dims[i]) for i in range(len(dims))]  # Dims indexes like a tuple; it declares no __iter__
        if shape[0] > 0:
            return int(shape[0]), int(shape[0])
        lo, _, hi = self.engine.get_tensor_profile_shape(self._in_name, 0)
        return int(lo[0]), int(hi[0])

    def _allocate(self, max_batch: int) -> _Buffers:
        cudart = import_cudart()
        c, h, w = self.input_shape
        n_in, n_out = max_batch * c * h * w, max_batch * self.card.num_classes
        in_bytes, out_bytes = n_in * self._in_dtype.itemsize, n_out * self._out_dtype.itemsize
        d_in = int(cuda_check(cudart.cudaMalloc(in_bytes)))
        d_out = int(cuda_check(cudart.cudaMalloc(out_bytes)))
        h_in_ptr, h_in = _pinned(in_bytes, self._in_dtype, n_in)
        h_out_ptr, h_out = _pinned(out_bytes, self._out_dtype, n_out)
        stream = cuda_check(cudart.cudaStreamCreate())
        return _Buffers(d_in, d_out, h_in, h_out, h_in_ptr, h_out_ptr, stream)

    def _context(self, i: int, buf: _Buffers) -> trt.IExecutionContext:
        """Context ``i`` on profile ``i`` (dynamic batch), bound to its own buffers."""
        cudart = import_cudart()
        ctx = self.engine.create_execution_context()
        if i and not ctx.set_optimization_profile_async(i, int(buf.stream)):
            raise EdgetlError(f"{self.path}: cannot select optimization profile {i}; " + rebuild_hint(self.path))
        cuda_check(cudart.cudaStreamSynchronize(buf.stream))
        ctx.set_tensor_address(self._in_name, buf.d_in)
        ctx.set_tensor_address(self._out_name, buf.d_out)
        return ctx

    def _set_batch(self, ctx: trt.IExecutionContext, n: int) -> None:
        if not ctx.set_input_shape(self._in_name, (n, *self.input_shape)):
            raise EdgetlError(f"{self.path}: batch {n} is outside the engine's profile "
                              f"[{self.info.min_batch}, {self.info.max_batch}]; rebuild with a wider --max-batch")

    def _enqueue(self, i: int, n: int) -> None:
        """Run context ``i`` on its stream for batch ``n`` (through its CUDA graph when enabled)."""
        cudart = import_cudart()
        ctx, buf = self.contexts[i], self.buffers[i]
        if self._shape != n or i:
            self._set_batch(ctx, n)
            self._shape = n if i == 0 else self._shape
        if not self.cuda_graph or i:
            if not ctx.execute_async_v3(int(buf.stream)):
                raise EdgetlError(f"{self.path}: TensorRT execution failed for batch {n}")
            return
        if self._graph is None or self._graph[0] != n:
            self._drop_graph()
            ctx.execute_async_v3(int(buf.stream))  # TensorRT needs one run after a shape change before capture
            cuda_check(cudart.cudaStreamSynchronize(buf.stream))
            mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            cuda_check(cudart.cudaStreamBeginCapture(buf.stream, mode))
            ctx.execute_async_v3(int(buf.stream))
            graph = cuda_check(cudart.cudaStreamEndCapture(buf.stream))
            self._graph = (n, graph, cuda_check(cudart.cudaGraphInstantiate(graph, 0)))
        cuda_check(cudart.cudaGraphLaunch(self._graph[2], buf.stream))

    def _drop_graph(self) -> None:
        if self._graph is not None:
            cudart = import_cudart()
            cuda_check(cudart.cudaStreamSynchronize(self.buffers[0].stream))  # a launched graph may still run
            cudart.cudaGraphExecDestroy(self._graph[2])
            cudart.cudaGraphDestroy(self._graph[1])
            self._graph = None

    def _copy_in(self, i: int, batch: np.ndarray) -> None:
        cudart = import_cudart()
        buf, count = self.buffers[i], batch.size
        buf.h_in[:count] = batch.reshape(-1).astype(self._in_dtype, copy=False)
        cuda_check(cudart.cudaMemcpyAsync(buf.d_in, buf.h_in_ptr, count * self._in_dtype.itemsize,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, buf.stream))

    def _copy_out(self, i: int, n: int) -> None:
        cudart = import_cudart()
        buf, count = self.buffers[i], n * self.card.num_classes
        cuda_check(cudart.cudaMemcpyAsync(buf.h_out_ptr, buf.d_out, count * self._out_dtype.itemsize,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, buf.stream))

    def _result(self, i: int, n: int) -> np.ndarray:
        cudart = import_cudart()
        cuda_check(cudart.cudaStreamSynchronize(self.buffers[i].stream))
        count = n * self.card.num_classes
        return self.buffers[i].h_out[:count].astype(np.float32).reshape(n, self.card.num_classes)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        self._copy_in(0, batch)
        self._enqueue(0, n)
        self._copy_out(0, n)
        return self._result(0, n)

    def infer_pipelined(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Throughput mode: alternate batches over the contexts so copies of one overlap compute of another."""
        k = len(self.contexts)
        self._drop_graph()  # context 0 changes shape below: its graph would be stale
        out: list[np.ndarray] = []
        pending: list[tuple[int, int]] = []
        for j, raw in enumerate(batches):
            batch = self.check_input(raw)
            i = j % k
            if len(pending) == k:
                out.append(self._result(*pending.pop(0)))
            self._copy_in(i, batch)
            self._set_batch(self.contexts[i], batch.shape[0])
            if not self.contexts[i].execute_async_v3(int(self.buffers[i].stream)):
                raise EdgetlError(f"{self.path}: TensorRT execution failed")
            self._copy_out(i, batch.shape[0])
            pending.append((i, batch.shape[0]))
        out += [self._result(i, n) for i, n in pending]
        self._shape = None
        return out

    def compute_call(self, batch: np.ndarray) -> Callable[[], object]:
        """Input copied to the device once; each call enqueues inference only (timed with CUDA events)."""
        cudart = import_cudart()
        fitted = self.check_input(batch)
        n = fitted.shape[0]
        if not self.info.min_batch <= n <= (self.info.max_batch or n):
            return super().compute_call(batch)
        self._copy_in(0, fitted)
        cuda_check(cudart.cudaStreamSynchronize(self.buffers[0].stream))
        return lambda: self._enqueue(0, n)

    def time_calls(self, fn: Callable[[], object], n: int) -> list[float]:
        """Back-to-back calls timed by n + 1 CUDA events on the runner's stream (see ``time_torch_cuda``)."""
        cudart = import_cudart()
        stream = self.buffers[0].stream
        marks = [cuda_check(cudart.cudaEventCreate()) for _ in range(n + 1)]
        cuda_check(cudart.cudaEventRecord(marks[0], stream))
        for mark in marks[1:]:
            fn()
            cuda_check(cudart.cudaEventRecord(mark, stream))
        cuda_check(cudart.cudaStreamSynchronize(stream))
        times = [float(cuda_check(cudart.cudaEventElapsedTime(a, b))) for a, b in zip(marks, marks[1:], strict=False)]
        for mark in marks:
            cudart.cudaEventDestroy(mark)
        return times

    @property
    def timer_name(self) -> str:
        return "cuda-events"

    def close(self) -> None:
        if not hasattr(self, "buffers"):
            return
        cudart = import_cudart()
        self._drop_graph()
        for buf in self.buffers:
            cudart.cudaStreamSynchronize(buf.stream)
            cudart.cudaFree(buf.d_in)
            cudart.cudaFree(buf.d_out)
            cudart.cudaFreeHost(buf.h_in_ptr)
            cudart.cudaFreeHost(buf.h_out_ptr)
            cudart.cudaStreamDestroy(buf.stream)
        del self.buffers
        self.contexts.clear()
        del self.engine
