"""The one small interface every backend implements (Polygraphy-style runners).

A runner is a context manager with ``infer(batch) -> logits`` on float32 NCHW batches. The base class
owns the batch policy, so backends only run one batch that fits their range:
batches above ``max_batch`` are split; with a static batch, short batches are padded and the padding
is dropped from the output.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgetl.card import ModelCard
from edgetl.errors import EdgetlError


@dataclass
class RunnerInfo:
    """What a runner is: shown by ``edgetl info`` and recorded in benchmark and parity reports."""

    backend: str
    precision: str
    device: str
    input_name: str = "input"
    output_name: str = "logits"
    min_batch: int = 1
    max_batch: int | None = None
    static_batch: bool = False
    details: dict[str, Any] = field(default_factory=dict)


class Runner(abc.ABC):
    """Base class: subclasses set ``self.card`` and ``self.info`` and implement ``_infer``."""

    card: ModelCard
    info: RunnerInfo

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch whose size lies within the runner's batch range."""

    def close(self) -> None:
        """Release sessions, contexts and device memory."""
        return None

    # --- benchmark hooks (edgetl.bench): compute mode times inference on data already on the device ---

    def compute_call(self, batch: np.ndarray) -> Callable[[], object]:
        """A call that runs ``batch`` with inputs already where the backend computes.

        CPU backends compute on host memory, so the default is plain ``infer``; GPU backends override it
        to upload once and return a call that touches device memory only.
        """
        fitted = self.check_input(batch)
        return lambda: self.infer(fitted)

    def time_calls(self, fn: Callable[[], object], n: int) -> list[float]:
        """Milliseconds of each of ``n`` calls: host wall clock by default, CUDA events on GPU backends."""
        from edgetl.runtime.timing import time_host

        return time_host(fn, n)

    @property
    def timer_name(self) -> str:
        return "perf_counter_ns"

    def peak_memory_mb(self) -> float | None:
        """Peak device memory the backend allocated, where it can be measured honestly; None otherwise."""
        return None

    def reset_peak_memory(self) -> None:
        return None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.card.preprocess.input_size)  # type: ignore[return-value]

    def check_input(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` as contiguous float32, or a one-line error naming the artifact: a wrong shape, or integer
        pixels (0-255 run unnormalised would give confident wrong answers; the Predictor preprocesses images)."""
        name = self.info.details.get("path") or f"this {self.info.backend} model"
        expected = f"(N, {', '.join(map(str, self.input_shape))}) float32 NCHW"
        if not isinstance(batch, np.ndarray):
            raise EdgetlError(f"{name}: infer takes a numpy array {expected}, not a {type(batch).__name__}; "
                              "use np.stack, or edgetl.runtime.Predictor for image files")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise EdgetlError(f"{name}: input of shape {tuple(batch.shape)} does not fit; it expects {expected}")
        if not np.issubdtype(batch.dtype, np.floating):
            raise EdgetlError(f"{name}: input of dtype {batch.dtype} (raw pixels?); it expects {expected}, "
                              "preprocessed as its card says: edgetl.runtime.Predictor does that for images")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits (float32, N x classes) for a float32 NCHW batch of any size."""
        batch = self.check_input(batch)
        if batch.shape[0] == 0:
            return np.zeros((0, self.card.num_classes), np.float32)
        return np.concatenate([np.asarray(self._infer(piece), np.float32)[:rows]
                               for piece, rows in self.fitted_chunks(batch)], axis=0)

    def fitted_chunks(self, batch: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """``batch`` cut at the artifact's max batch, each piece zero-padded to a size it takes: (piece, real rows)."""
        n, hi = batch.shape[0], self.info.max_batch or max(batch.shape[0], 1)
        static = self.info.max_batch if self.info.static_batch else None
        out = []
        for start in range(0, n, hi):
            chunk = batch[start:start + hi]
            rows = chunk.shape[0]
            target = static or max(rows, self.info.min_batch)
            if target > rows:
                chunk = np.concatenate([chunk, np.zeros((target - rows, *chunk.shape[1:]), np.float32)])
            out.append((chunk, rows))
        return out

    def runs_as(self, n: int) -> str | None:
        """How a batch of ``n`` really runs when the artifact's batch range does not take it as is (for reports)."""
        hi = self.info.max_batch
        calls = -(-n // hi) if hi else 1
        size = hi if self.info.static_batch and hi else max(min(n, hi or n), self.info.min_batch)
        if calls == 1 and size == n:
            return None
        if calls == 1:
            return f"padded to {size}"
        if not self.info.static_batch:
            return f"{calls} calls of up to {size}"
        return f"{calls} calls of {size}" + (f", padded to {calls * size}" if calls * size > n else "")
