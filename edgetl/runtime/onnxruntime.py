"""ONNX Runtime backend: TensorRT, CUDA or CPU execution provider, best available unless named.

Figures are honest: after the session is created we read back the providers ORT actually uses, so a
session that silently fell back to the CPU is reported as CPU (and refused when a GPU provider was asked for).
A GPU session that left convolutions or matrix products to the CPU is refused too: its figures would be neither
the GPU's nor the CPU's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.card import INT8_TARGET_KEY, ModelCard
from edgetl.errors import EdgetlError
from edgetl.runtime.base import Runner, RunnerInfo
from edgetl.runtime.onnx_graph import summarize_onnx

PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider",
}
PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider"})
OPTIMIZATIONS = ("all", "extended", "basic", "disable")
TRT_EP = "TensorrtExecutionProvider"
TRT_CACHE_ENV = "EDGETL_ORT_TRT_CACHE"  # ORT TensorRT EP engines (default edgetl.io.cache_dir()/ort-tensorrt)
TRT_CACHE_KEEP = 8  # files whose engines are kept; older folders are deleted (Jetson storage is small)
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")  # substrings: also FusedConv, QLinearConv, MatMulInteger, ...
RECORD_PLACEMENT = "session.record_ep_graph_assignment_info"


def resolve_providers(requested: list[str] | str | None, available: list[str]) -> list[str]:
    """Full provider names to ask ORT for: the named ones (aliases allowed) or the best available chain."""
    if requested is None:
        best = [p for p in PREFERENCE if p in available]
        return best or ["CPUExecutionProvider"]
    names = [requested] if isinstance(requested, str) else list(requested)
    out = []
    for name in names:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in PREFERENCE:  # e.g. Azure: a remote-call provider, every node would run on the CPU
            raise EdgetlError(f"ONNX Runtime provider {name!r} is not one edgetl "
                              "measures; choose tensorrt, cuda or cpu")
        if full not in available:
            raise EdgetlError(f"ONNX Runtime provider {name!r} is not available here; available: "
                              f"{', '.join(available)} (install onnxruntime-gpu for CUDA / TensorRT)")
        out.append(full)
    if "CPUExecutionProvider" not in out and out[-1] == "TensorrtExecutionProvider" \
            and "CUDAExecutionProvider" in available:
        out.append("CUDAExecutionProvider")  # TensorRT EP hands unsupported nodes to CUDA, as ORT recommends
    return out


def _session_options(optimization: str, threads: int | None, spinning: bool = True) -> Any:
    import onnxruntime as ort

    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    if optimization not in levels:
        raise EdgetlError(f"unknown ONNX Runtime optimization {optimization!r}; choose one of "
                          f"{', '.join(OPTIMIZATIONS)}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[optimization]
    opts.log_severity_level = 3
    opts.add_session_config_entry(RECORD_PLACEMENT, "1")  # read by node_placement; older ORT ignores the key
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:  # idle worker threads sleep instead of spinning: other models in the process get the cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def node_placement(session: Any) -> dict[str, list[str]] | None:
    """The op types each execution provider runs after partitioning (None where this ORT cannot say: before 1.24)."""
    getter = getattr(session, "get_provider_graph_assignment_info", None)
    if getter is None:
        return None
    try:
        subgraphs = getter()
    except Exception:  # recording was not enabled for this session
        return None
    placement: dict[str, list[str]] = {}
    for subgraph in subgraphs:
        placement.setdefault(subgraph.ep_name, []).extend(node.op_type for node in subgraph.get_nodes())
    return placement or None  # empty: ORT recorded nothing


def compute_on_cpu(placement: dict[str, list[str]] | None, primary: str) -> list[str]:
    """Convolutions and matrix products a GPU session left to the CPU: [] when none, or the session is a CPU one.

    ORT places shape arithmetic on the CPU on purpose; a Conv or Gemm there means a partial fallback.
    """
    if placement is None or primary not in GPU_PROVIDERS:
        return []
    cpu_ops = placement.get("CPUExecutionProvider", [])
    return sorted(op for op in cpu_ops if any(name in op for name in COMPUTE_OPS))


def tensorrt_ep_options(path: Path) -> dict[str, str]:
    """ORT TensorRT EP options: engines cached in a folder keyed by the file's content.

    No precision flag is set: recent ORT releases with TensorRT 10 then build the network strongly typed, in
    the graph's own precision, as ``edgetl export --engine`` does; ``trt_fp16_enable`` would make it weakly
    typed, free to run in FP16 the nodes the FP16 export keeps in FP32. ORT names cached engines by graph
    and file name, not weights, so a re-exported file must never find the old folder.
    """
    from edgetl.io import cache_dir, sha256_file

    root = Path(os.environ.get(TRT_CACHE_ENV) or cache_dir() / "ort-tensorrt")
    cache = root / sha256_file(path)[:16]
    try:
        cache.mkdir(parents=True, exist_ok=True)
        os.utime(cache)  # most recently used: pruned last
    except OSError as exc:
        raise EdgetlError(f"{root}: cannot keep ONNX Runtime's TensorRT engines there ({exc.strerror}); set "
                          f"{TRT_CACHE_ENV} to a writable folder") from None
    for old in sorted((d for d in root.iterdir() if d.is_dir()), key=_mtime)[:-TRT_CACHE_KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile by another process pruning the same cache
        return 0.0


def provider_chain(wanted: list[str], named: bool, path: Path, target: str | None) -> list[Any]:
    """What ``InferenceSession(providers=...)`` gets: ``wanted`` with the TensorRT EP's options attached.

    A CPU-target INT8 file (asymmetric U8 Q/DQ, which TensorRT cannot build) skips the TensorRT EP when the
    provider was chosen for the user, and is refused when they named it.
    """
    if target == "cpu" and TRT_EP in wanted:
        if named:
            raise EdgetlError(f"{path}: this INT8 model was made for the CPU (asymmetric U8), which TensorRT "
                              "cannot run; export one with --int8-target tensorrt, or run this one with provider "
                              "cuda or cpu")
        wanted = [p for p in wanted if p != TRT_EP]
    return [(p, tensorrt_ep_options(path)) if p == TRT_EP else p for p in wanted]


def int8_target(card: ModelCard, metadata: dict[str, str]) -> str | None:
    """Which INT8 numerics a Q/DQ model was made for ("tensorrt" or "cpu"), from the card or the metadata."""
    value = card.extra.get("int8_target") or metadata.get(INT8_TARGET_KEY)
    return str(value) if value else None


def onnx_int8_target(path: str | Path) -> str | None:
    """The INT8 target recorded in an ONNX file (None for FP32/FP16 files or when not recorded)."""
    graph = summarize_onnx(path)
    if graph.precision != "int8":
        return None
    card = ModelCard.from_metadata(graph.metadata, source=str(path))
    return int8_target(card, graph.metadata)


class OrtRunner(Runner):
    """Runs an edgetl ONNX file; the card comes from its ``metadata_props``.

    ``optimization="disable"`` runs Q/DQ nodes as float fake-quant, which is how TensorRT computes INT8;
    ORT's default fuses them into integer kernels with slightly different rounding.
    """

    def __init__(self, path: str | Path, providers: list[str] | str | None = None, optimization: str = "all",
                 threads: int | None = None, card: ModelCard | None = None, spinning: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise EdgetlError(f"{self.path}: ONNX file not found; export one with `edgetl export`")
        graph = self._summarize()
        self.card = card or ModelCard.from_metadata(graph.metadata, source=str(self.path))
        try:
            wanted = resolve_providers(providers, ort.get_available_providers())
        except EdgetlError as exc:
            raise EdgetlError(f"{self.path}: {exc}") from None
        target = int8_target(self.card, graph.metadata) if graph.precision == "int8" else None
        chain = provider_chain(wanted, providers is not None, self.path, target)
        try:
            self.session = ort.InferenceSession(str(self.path), _session_options(optimization, threads, spinning),
                                                providers=chain)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/EPFail types
            fix = ("its TensorRT provider could not build it (an older ORT builds weakly typed networks, which "
                   "refuse Q/DQ): run it with provider cuda, or build an engine with `edgetl export --engine`"
                   if TRT_EP in wanted and "TensorRT" in str(exc) else "re-export it with `edgetl export`")
            raise EdgetlError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]}); "
                              f"{fix}") from None
        used = self.session.get_providers()
        if providers is not None and used[0] != wanted[0]:
            raise EdgetlError(f"{self.path}: asked for {wanted[0]} but ONNX Runtime fell back to {used[0]} "
                              "(check the CUDA / cuDNN / TensorRT libraries); refusing to report it as GPU")
        self.provider = used[0]
        self.device = "cuda" if self.provider in GPU_PROVIDERS else "cpu"
        placement = node_placement(self.session)
        self._refuse_partial_fallback(placement)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self._check_card(inp.shape, out.shape)
        self._in_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        dim0 = inp.shape[0] if inp.shape else None
        static = isinstance(dim0, int) and dim0 > 0
        self.info = RunnerInfo(
            backend="onnxruntime", precision=graph.precision, device=self.device, input_name=inp.name,
            output_name=out.name, min_batch=int(dim0) if isinstance(dim0, int) and static else 1,
            max_batch=int(dim0) if isinstance(dim0, int) and static else None, static_batch=static,
            details={"provider": self.provider, "providers": used, "optimization": optimization,
                     "threads": threads or ("ORT default: one per physical core" if self.device == "cpu" else None),
                     "spinning": spinning,
                     "nodes_per_provider": {ep: len(ops) for ep, ops in placement.items()} if placement else None,
                     "input_type": inp.type, "graph": graph.to_dict(), "path": str(self.path),
                     "int8_target": target,
                     "tensorrt_ep": dict(self.session.get_provider_options().get(TRT_EP, {})) or None},
        )

    def _refuse_partial_fallback(self, placement: dict[str, list[str]] | None) -> None:
        on_cpu = compute_on_cpu(placement, self.provider)
        if on_cpu:
            self.close()  # free the GPU session (and any TensorRT engine) before refusing it
            kinds = ", ".join(sorted(set(on_cpu)))
            raise EdgetlError(f"{self.path}: {self.provider} left {len(on_cpu)} compute nodes ({kinds}) to the CPU, "
                              "so its figures would be neither the GPU's nor the CPU's; use an onnxruntime-gpu "
                              "build that supports them, or run it with provider cpu")

    def _check_card(self, input_shape: list[Any], output_shape: list[Any]) -> None:
        """The card must describe this graph: its classes and input size decide what answers mean."""
        fixed = [d if isinstance(d, int) and d > 0 else None for d in input_shape[1:]]
        want = list(self.card.preprocess.input_size)
        classes = output_shape[-1] if output_shape else None
        if len(fixed) == 3 and any(f is not None and f != w for f, w in zip(fixed, want, strict=True)):
            raise EdgetlError(f"{self.path}: its metadata says input {want} but the graph takes {input_shape[1:]}; "
                              "re-export it with `edgetl export`")
        if isinstance(classes, int) and classes > 0 and classes != self.card.num_classes:
            raise EdgetlError(f"{self.path}: its metadata lists {self.card.num_classes} classes but the graph "
                              f"outputs {classes}; re-export it with `edgetl export`")

    def _summarize(self) -> Any:
        try:
            return summarize_onnx(self.path)
        except EdgetlError:
            raise  # already says what is wrong with the file
        except Exception as exc:  # onnx.DecodeError and friends
            raise EdgetlError(f"{self.path}: not a readable ONNX file ({type(exc).__name__}); "
                              "re-export it with `edgetl export`") from None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        x = batch.astype(self._in_dtype, copy=False)
        if self.device == "cuda":
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.info.input_name, x)
            binding.bind_output(self.info.output_name, "cuda")
            self.session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        else:
            out = self.session.run([self.info.output_name], {self.info.input_name: x})[0]
        return np.asarray(out, np.float32)

    def compute_call(self, batch: np.ndarray) -> Callable[[], object]:
        """On CUDA: input uploaded once and output kept on the device, bound with IO binding."""
        if self.info.static_batch and batch.shape[0] != self.info.max_batch:
            return super().compute_call(batch)
        if self.device != "cuda":
            x = self.check_input(batch).astype(self._in_dtype, copy=False)
            feed, names = {self.info.input_name: x}, [self.info.output_name]
            return lambda: self.session.run(names, feed)
        x = self.check_input(batch).astype(self._in_dtype, copy=False)
        return bound_call(self.session, self.info.input_name, self.info.output_name, x, "cuda")

    @property
    def timer_name(self) -> str:
        # run_with_iobinding / run return only when outputs are ready, so host time is the latency
        return "perf_counter_ns"

    def close(self) -> None:
        self.__dict__.pop("session", None)


def bound_call(session: Any, input_name: str, output_name: str, x: np.ndarray, device: str) -> Callable[[], Any]:
    """``x`` uploaded once to ``device`` and the output left there: each call is inference alone (IO binding).

    The binding is returned as the call's result, so a caller can read the output with ``copy_outputs_to_cpu``.
    """
    import onnxruntime as ort

    value = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input(input_name, value)
    binding.bind_output(output_name, device)

    def call() -> Any:
        _ = value  # the device input must live as long as the call does
        session.run_with_iobinding(binding)
        return binding

    return call
