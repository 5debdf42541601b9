"""Timers: host wall clock (perf_counter_ns) and CUDA events on the stream the work runs on.

Each returns one duration per call, so statistics (p99) see every iteration, not batch averages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def time_host(fn: Callable[[], object], n: int) -> list[float]:
    """Milliseconds of each of ``n`` back-to-back calls of a synchronous ``fn``, by ``time.perf_counter_ns``.

    One clock reading marks each boundary, as the CUDA timer below does: the times add up to the loop's span.
    """
    out = []
    clock = time.perf_counter_ns
    last = clock()
    for _ in range(n):
        fn()
        now = clock()
        out.append((now - last) / 1e6)
        last = now
    return out


def time_torch_cuda(fn: Callable[[], object], n: int, stream: Any = None) -> list[float]:
    """Milliseconds of each of ``n`` back-to-back calls, from CUDA events on ``stream`` (default: the current one).

    One event marks each boundary (n + 1 in all), so call i's time runs from the mark before it to the
    mark after it and the times add up to the loop's whole span: host work between calls (Python's garbage
    collector, the loop itself) is never left out, and the mean is exactly what a hand-written event pair
    around the same loop gives. Marks are read after one final synchronisation, so timing does not
    serialise the host with the GPU. On a GPU-bound call each time is the call's GPU time.
    """
    import torch

    stream = stream or torch.cuda.current_stream()
    marks = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
    marks[0].record(stream)
    for mark in marks[1:]:
        fn()
        mark.record(stream)
    stream.synchronize()
    return [float(a.elapsed_time(b)) for a, b in zip(marks, marks[1:], strict=False)]
