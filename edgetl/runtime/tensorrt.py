"""TensorRT backend over cuda-python: device buffers, pinned host buffers, one stream, optional CUDA graphs.

TensorRT and cuda-python are imported only when an engine is opened. Only name-based tensor APIs are used
(``get_tensor_name`` / ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``), which exist in
TensorRT 10.x (JetPack 6: 10.3, JetPack 7: 10.13+) and 11. This module is type-checked against
tensorrt-stubs; it cannot be executed on a machine without TensorRT and a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.base import Runner, RunnerInfo
from edgetl.runtime.cuda import Gpu, cuda_check, gpu_identity, import_cudart, import_tensorrt, pinned_array, set_device
from edgetl.runtime.engine_meta import (
    build_options,
    card_from_engine_metadata,
    compatibility_error,
    engine_metadata,
    rebuild_hint,
)

if TYPE_CHECKING:
    import tensorrt as trt

def _destroy_graph(cudart: Any, graph: Any) -> None:
    if graph is not None and int(graph):  # a null handle when the capture was invalidated
        cudart.cudaGraphDestroy(graph)


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
        gpu = self._check_machine(meta, device)
        import tensorrt as trt

        self.dla_core: int | None = build_options(meta).get("dla_core")
        self.engine = self._deserialize(meta)
        self._in_name, self._out_name = self._io_names()
        self._in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self._in_name)))
        self._out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self._out_name)))
        self._check_output()
        lo, hi = self._batch_range()
        self._check_options(contexts, lo != hi, cuda_graph)
        self.cuda_graph = cuda_graph
        self._graph: tuple[int, Any, Any] | None = None  # (batch, graph, executable) of context 0
        self._shape: int | None = None
        self.contexts: list[trt.IExecutionContext] = []
        self.buffers: list[_Buffers] = []
        try:  # a failure part-way frees what was allocated
            for i in range(contexts):
                self.buffers.append(self._allocate(hi))
                self.contexts.append(self._context(i, self.buffers[i], profile=i if lo != hi else 0))
        except BaseException:
            self.close()
            raise
        self.info = RunnerInfo(
            backend="tensorrt", precision=str(meta.get("precision", "unknown")), device="cuda",
            input_name=self._in_name, output_name=self._out_name, min_batch=lo, max_batch=hi,
            static_batch=lo == hi, details={"tensorrt": str(trt.__version__), "gpu": gpu.name,
                                            "compute_capability": gpu.capability, "built_on": meta.get("gpu"),
                                            "cuda_graph": cuda_graph, "contexts": contexts, "dla_core": self.dla_core,
                                            "path": str(self.path)},
        )
        if meta.get("gpu") and meta.get("gpu") != gpu.name:
            self.info.details["warning"] = f"built on {meta.get('gpu')}, running on {gpu.name} (sm {gpu.capability})"

    def _check_machine(self, meta: dict[str, Any], device: int) -> Gpu:
        """TensorRT and cuda-python present, ``device`` current, and the engine built for this TensorRT and GPU."""
        try:
            trt_mod = import_tensorrt()
            import_cudart()
            set_device(device)
        except EdgetlError as exc:  # say which file wanted them
            raise EdgetlError(f"{self.path}: {exc}") from None
        gpu = gpu_identity(device)
        reason = compatibility_error(self.path, meta, str(trt_mod.__version__), gpu.name, gpu.capability,
                                     integrated=gpu.integrated)
        if reason:
            raise EdgetlError(reason)
        return gpu

    def _deserialize(self, meta: dict[str, Any]) -> trt.ICudaEngine:
        import tensorrt as trt

        self._logger = trt.Logger(trt.Logger.ERROR)
        self._runtime = trt.Runtime(self._logger)
        # a version-compatible plan embeds its lean runtime: host code, allowed for engines edgetl recorded
        self._runtime.engine_host_code_allowed = bool(build_options(meta).get("version_compatible"))
        if self.dla_core is not None:
            self._runtime.DLA_core = int(self.dla_core)  # the core it was built for (default: none)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EdgetlError(f"{self.path}: TensorRT {trt.__version__} cannot deserialize it (not an engine, "
                              "or built for another TensorRT version / GPU); " + rebuild_hint(self.path))
        return engine

    def _check_options(self, contexts: int, dynamic: bool, cuda_graph: bool) -> None:
        if dynamic and contexts > self.engine.num_optimization_profiles:
            raise EdgetlError(f"{self.path}: {contexts} execution contexts need {contexts} optimization profiles and "
                              f"this engine has {self.engine.num_optimization_profiles}; rebuild it with "
                              f"`edgetl export --engine --profiles {contexts}` or use contexts=1")
        if cuda_graph and self.dla_core is not None:
            raise EdgetlError(f"{self.path}: a DLA engine cannot be replayed as a CUDA graph; drop cuda_graph")

    def _check_output(self) -> None:
        dims = self.engine.get_tensor_shape(self._out_name)
        shape = [int(dims[i]) for i in range(len(dims))]
        if len(shape) != 2 or shape[1] != self.card.num_classes:
            raise EdgetlError(f"{self.path}: output {self._out_name!r} has shape {shape} but its metadata names "
                              f"{self.card.num_classes} classes; the engine and its record do not belong together "
                              "— re-export it")

    def _io_names(self) -> tuple[str, str]:
        import tensorrt as trt

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
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
        """One context's buffers; what was allocated is freed again if a later allocation fails."""
        cudart = import_cudart()
        c, h, w = self.input_shape
        n_in, n_out = max_batch * c * h * w, max_batch * self.card.num_classes
        in_bytes, out_bytes = n_in * self._in_dtype.itemsize, n_out * self._out_dtype.itemsize
        undo: list[tuple[Callable[[Any], Any], Any]] = []
        try:
            d_in = int(cuda_check(cudart.cudaMalloc(in_bytes)))
            undo.append((cudart.cudaFree, d_in))
            d_out = int(cuda_check(cudart.cudaMalloc(out_bytes)))
            undo.append((cudart.cudaFree, d_out))
            h_in_ptr, h_in = pinned_array(in_bytes, self._in_dtype, n_in)
            undo.append((cudart.cudaFreeHost, h_in_ptr))
            h_out_ptr, h_out = pinned_array(out_bytes, self._out_dtype, n_out)
            undo.append((cudart.cudaFreeHost, h_out_ptr))
            stream = cuda_check(cudart.cudaStreamCreate())
        except BaseException:
            for free, ptr in reversed(undo):
                free(ptr)
            raise
        return _Buffers(d_in, d_out, h_in, h_out, h_in_ptr, h_out_ptr, stream)

    def _context(self, i: int, buf: _Buffers, profile: int) -> trt.IExecutionContext:
        """Context ``i`` on optimization ``profile``, bound to its own buffers."""
        cudart = import_cudart()
        ctx: trt.IExecutionContext | None = self.engine.create_execution_context()
        if ctx is None:
            raise EdgetlError(f"{self.path}: TensorRT could not create execution context {i} (out of GPU memory?); "
                              "free the GPU or use fewer contexts")
        if profile and not ctx.set_optimization_profile_async(profile, int(buf.stream)):
            raise EdgetlError(f"{self.path}: cannot select optimization profile {profile}; " + rebuild_hint(self.path))
        cuda_check(cudart.cudaStreamSynchronize(buf.stream))
        ctx.set_tensor_address(self._in_name, buf.d_in)
        ctx.set_tensor_address(self._out_name, buf.d_out)
        return ctx

    def _set_batch(self, ctx: trt.IExecutionContext, n: int) -> None:
        if not ctx.set_input_shape(self._in_name, (n, *self.input_shape)):
            raise EdgetlError(f"{self.path}: batch {n} is outside the engine's profile "
                              f"[{self.info.min_batch}, {self.info.max_batch}]; build it again with `edgetl export "
                              f"--engine --batch MIN:OPT:MAX` covering {n}")

    def _execute(self, i: int, n: int) -> None:
        if not self.contexts[i].execute_async_v3(int(self.buffers[i].stream)):
            raise EdgetlError(f"{self.path}: TensorRT execution failed for batch {n} (TensorRT's log above says why); "
                              + rebuild_hint(self.path))

    def _enqueue(self, i: int, n: int) -> None:
        """Run context ``i`` on its stream for batch ``n`` (through its CUDA graph when enabled)."""
        cudart = import_cudart()
        if self._shape != n or i:
            self._set_batch(self.contexts[i], n)
            self._shape = n if i == 0 else self._shape
        if not self.cuda_graph or i:
            self._execute(i, n)
            return
        if self._graph is None or self._graph[0] != n:
            self._capture(n)
        assert self._graph is not None
        cuda_check(cudart.cudaGraphLaunch(self._graph[2], self.buffers[0].stream))

    def _capture(self, n: int) -> None:
        """Capture context 0's enqueue at batch ``n`` as a CUDA graph; a refused enqueue is an error, not a
        silently empty graph that would hand back stale logits."""
        cudart = import_cudart()
        stream = self.buffers[0].stream
        self._drop_graph()
        self._execute(0, n)  # TensorRT needs one run after a shape change before capture
        cuda_check(cudart.cudaStreamSynchronize(stream))
        cuda_check(cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        try:
            captured = self.contexts[0].execute_async_v3(int(stream))
        except BaseException:  # the stream must not stay capturing
            _destroy_graph(cudart, cudart.cudaStreamEndCapture(stream)[1])
            raise
        err, graph = cudart.cudaStreamEndCapture(stream)  # always end the capture, then judge it
        if not captured or err != cudart.cudaError_t.cudaSuccess:
            _destroy_graph(cudart, graph)
            raise EdgetlError(f"{self.path}: TensorRT cannot run under CUDA graph capture at batch {n}; "
                              "run it without cuda_graph")
        err, executable = cudart.cudaGraphInstantiate(graph, 0)
        if err != cudart.cudaError_t.cudaSuccess:
            cudart.cudaGraphDestroy(graph)
            cuda_check((err,))
        self._graph = (n, graph, executable)

    def _drop_graph(self, checked: bool = True) -> None:
        """Free context 0's graph; ``checked=False`` (closing) never raises, so nothing else is left unfreed."""
        if self._graph is not None:
            cudart = import_cudart()
            synced = cudart.cudaStreamSynchronize(self.buffers[0].stream)  # a launched graph may still run
            if checked:
                cuda_check(synced)
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
        """Throughput mode: alternate batches over the contexts so copies of one overlap compute of another.

        Each batch is cut and padded to the engine's range as :meth:`infer` does; one logits array per batch.
        """
        k = len(self.contexts)
        self._drop_graph()  # context 0 changes shape below: its graph would be stale
        pieces = [(j, piece, rows) for j, raw in enumerate(batches)
                  for piece, rows in self.fitted_chunks(self.check_input(raw))]
        done: list[tuple[int, np.ndarray]] = []
        pending: list[tuple[int, int, int, int]] = []  # (batch index, context, size run, real rows)
        try:
            for step, (j, piece, rows) in enumerate(pieces):
                i = step % k
                if len(pending) == k:
                    done.append(self._collect(*pending.pop(0)))
                self._copy_in(i, piece)
                self._set_batch(self.contexts[i], piece.shape[0])
                self._execute(i, piece.shape[0])
                self._copy_out(i, piece.shape[0])
                pending.append((j, i, piece.shape[0], rows))
            done += [self._collect(*p) for p in pending]
        finally:  # context 0's shape changed: the next infer() must set it again, even after an error
            self._shape = None
        empty: np.ndarray = np.zeros((0, self.card.num_classes), np.float32)
        return [np.concatenate([out for j, out in done if j == b] or [empty]) for b in range(len(batches))]

    def _collect(self, j: int, i: int, n: int, rows: int) -> tuple[int, np.ndarray]:
        return j, self._result(i, n)[:rows]

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
        """Free everything, unchecked: after a CUDA error, a raise here would leak the rest and hide the cause."""
        if not hasattr(self, "buffers"):
            return
        cudart = import_cudart()
        self._drop_graph(checked=False)
        for buf in self.buffers:
            cudart.cudaStreamSynchronize(buf.stream)
            cudart.cudaFree(buf.d_in)
            cudart.cudaFree(buf.d_out)
            cudart.cudaFreeHost(buf.h_in_ptr)
            cudart.cudaFreeHost(buf.h_out_ptr)
            cudart.cudaStreamDestroy(buf.stream)
        del self.buffers
        self.contexts.clear()
        self.__dict__.pop("engine", None)
