"""AOTInductor backend: a ``.pt2`` package compiled by ``edgetl export --aoti``, loaded in-process.

The same file ``edgetl_bench`` (cpp_bench/) times without Python, so timing both shows what the Python
call path costs. The card, input shape and batch range come from the package's own metadata.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.card import CPU_FEATURES_KEY, MAX_BATCH_KEY, MIN_BATCH_KEY, PRECISION_KEY, ModelCard
from edgetl.errors import EdgetlError
from edgetl.host import missing_cpu_features
from edgetl.runtime.base import Runner, RunnerInfo

DEVICE_KEY = "AOTI_DEVICE_KEY"  # written by AOTInductor itself: "cpu" or "cuda"


def read_pt2_metadata(path: str | Path) -> dict[str, str]:
    """Metadata of a ``.pt2`` without loading its shared library (no torch import: the package is a zip)."""
    p = Path(path)
    if not p.is_file():
        raise EdgetlError(f"{p}: file not found; pass the model.pt2 written by `edgetl export --aoti`")
    try:
        with zipfile.ZipFile(p) as zf:
            names = [n for n in zf.namelist() if "/data/aotinductor/" in n and n.endswith("_metadata.json")]
            if not names:
                raise EdgetlError(f"{p}: no AOTInductor model inside this .pt2; re-export "
                                  "it with `edgetl export --aoti`")
            meta = json.loads(zf.read(sorted(names)[-1]))
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise EdgetlError(f"{p}: not a readable AOTInductor package ({type(exc).__name__}); "
                          "re-export it with `edgetl export --aoti`") from None
    if not isinstance(meta, dict):
        raise EdgetlError(f"{p}: malformed AOTInductor metadata; re-export it with `edgetl export --aoti`")
    return {str(k): str(v) for k, v in meta.items()}


def _resolve_device(path: Path, requested: str | None, built_for: str) -> tuple[str, int]:
    """(device kind, index) to load on: None means the device the package was compiled for."""
    wanted = requested or built_for
    kind, _, index = wanted.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise EdgetlError(f"unknown device {wanted!r}; choose cpu or cuda[:N]")
    if kind != built_for:
        raise EdgetlError(f"{path}: package was compiled for {built_for}, not {kind}; use --device {built_for} "
                          f"or re-export with `edgetl export --aoti` on a {kind} machine")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise EdgetlError(f"{path}: needs a CUDA GPU, and none is visible to PyTorch; run it on the GPU machine")
    return kind, int(index) if index else (0 if kind == "cuda" else -1)


class AotiRunner(Runner):
    """Runs an AOTInductor package; ``device`` None means the device it was compiled for."""

    def __init__(self, path: str | Path, device: str | None = None) -> None:
        import torch

        self.path = Path(path)
        meta = read_pt2_metadata(self.path)
        self.card = ModelCard.from_metadata(meta, source=str(self.path))
        kind, index = _resolve_device(self.path, device, meta.get(DEVICE_KEY, "cpu"))
        missing = missing_cpu_features(meta.get(CPU_FEATURES_KEY, "")) if kind == "cpu" else []
        if missing:  # its code would hit an illegal instruction: refuse before loading it
            raise EdgetlError(f"{self.path}: compiled for a CPU with {', '.join(missing)}, which this CPU lacks "
                              "(AOTInductor compiles for the exporting CPU); re-export it with "
                              "`edgetl export --aoti` on this machine, or use the ONNX file")
        try:
            self.model: Callable[..., Any] = torch._inductor.aoti_load_package(str(self.path), device_index=index)
        except Exception as exc:  # a RuntimeError from the C++ loader: show its first line only
            raise EdgetlError(f"{self.path}: AOTInductor could not load it ({str(exc).splitlines()[0][:200]}); "
                              "re-export it with `edgetl export --aoti` on this machine") from None
        self.device = f"cuda:{index}" if kind == "cuda" else "cpu"
        self.info = RunnerInfo(
            backend="aoti", precision=meta.get(PRECISION_KEY, "fp32"), device=kind,
            min_batch=int(meta.get(MIN_BATCH_KEY, 1)), max_batch=int(meta.get(MAX_BATCH_KEY, 1)),
            details={"path": str(self.path), "torch": torch.__version__, "cpu_isa": meta.get("AOTI_CPU_ISA"),
                     "compute_capability": meta.get("AOTI_COMPUTE_CAPABILITY") or None},
        )

    def _to_device(self, batch: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(batch)
        return x if self.device == "cpu" else x.to(self.device, non_blocking=True)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return np.asarray(self.model(self._to_device(batch)).float().cpu().numpy(), np.float32)

    def compute_call(self, batch: np.ndarray) -> Callable[[], object]:
        import torch

        fitted = self.check_input(batch)
        if not self.info.min_batch <= fitted.shape[0] <= (self.info.max_batch or fitted.shape[0]):
            return super().compute_call(batch)
        x = self._to_device(fitted)

        def call() -> object:
            with torch.inference_mode():
                return self.model(x)

        return call

    def time_calls(self, fn: Callable[[], object], n: int) -> list[float]:
        from edgetl.runtime.timing import time_host, time_torch_cuda

        return time_torch_cuda(fn, n) if self.device != "cpu" else time_host(fn, n)

    @property
    def timer_name(self) -> str:
        return "cuda-events" if self.device != "cpu" else "perf_counter_ns"

    def close(self) -> None:
        self.__dict__.pop("model", None)
