"""Latency statistics over per-iteration timings (milliseconds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latency_stats(times_ms: Sequence[float]) -> dict[str, float]:
    """mean, min, p50, p90, p95, p99, max of ``times_ms`` (linear-interpolated percentiles, as numpy)."""
    if len(times_ms) == 0:
        raise ValueError("no timings to summarise")
    t = np.asarray(times_ms, np.float64)
    p50, p90, p95, p99 = np.percentile(t, [50, 90, 95, 99])
    return {"mean": float(t.mean()), "min": float(t.min()), "p50": float(p50), "p90": float(p90),
            "p95": float(p95), "p99": float(p99), "max": float(t.max())}


def throughput_ips(batch: int, mean_ms: float) -> float:
    """Images per second at ``batch`` images per call of mean latency ``mean_ms``."""
    return batch * 1000.0 / mean_ms if mean_ms > 0 else float("inf")
