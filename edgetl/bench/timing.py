"""Timers: host wall clock (perf_counter_ns) and CUDA events on the stream the work runs on.

Each returns one duration per call, so statistics (p99) see every iteration, not batch averages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def time_host(fn: Callable[[], object], n: int) -> list[float]:
    """Milliseconds of each of ``n`` calls of a synchronous ``fn``, by ``time.perf_counter_ns``."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        out.append((clock() - t0) / 1e6)
    return out


def time_torch_cuda(fn: Callable[[], object], n: int, stream: Any = None) -> list[float]:
    """Milliseconds of each of ``n`` calls measured with CUDA events on the current torch stream.

    Events are recorded around every call and read after one final synchronisation, so timing does not
    serialise the host with the GPU between iterations.
    """
    import torch

    stream = stream or torch.cuda.current_stream()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        starts[i].record(stream)
        fn()
        ends[i].record(stream)
    torch.cuda.synchronize()
    return [float(s.elapsed_time(e)) for s, e in zip(starts, ends, strict=True)]
