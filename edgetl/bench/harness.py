"""The benchmark loop: warm-up excluded, enough iterations for a stable p99, several artifacts interleaved.

Several artifacts are measured in the same process in rounds (A, B, C, A, B, C, …), each round a short
chunk of iterations per artifact, so clock boost, thermal drift or a noisy neighbour affects all of them
alike instead of favouring whichever ran first. Each chunk starts with one untimed call: the first call
after another backend ran pays for waking its thread pool and refilling caches (measured on 2 CPU cores:
a PyTorch call right after an ONNX Runtime chunk took 5x its steady latency), a cost that interleaving
adds and a deployment running one model does not have.

ONNX Runtime sessions keep their defaults, idle worker threads spinning included, as in the plain loop a user
writes to check these figures: the pause between chunks (``settle_s``) lets one session's spinning end before
the next artifact runs. Measured on 2 cores, Lite0 interleaved with PyTorch and two other ONNX files: sessions
with spinning off were 14-22% slower than each file alone at batch 1, with it on within -4..+11%, and PyTorch's
figures were the same either way (``benchmarks/plain_ratio.py`` compares with the plain loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetl.bench.schema import PRECISIONS
from edgetl.bench.stats import latency_stats, throughput_ips
from edgetl.data.transforms import eval_array
from edgetl.errors import EdgetlError
from edgetl.progress import show_progress
from edgetl.runtime.base import Runner

MODES = ("compute", "e2e")
MIN_CHUNK = 3  # timed calls per artifact and round, at least
OPTION_KEYS = ("optimization", "threads", "compile", "channels_last", "cuda_graph", "mode", "contexts", "tensorrt",
               "spinning", "tf32", "int8_target")


@dataclass
class BenchConfig:
    """None means default: at least 5 warm-up calls and 0.5 s; at least 100 timed calls and 2 s."""

    batches: Sequence[int] = (1,)
    mode: str = "compute"
    warmup_iters: int | None = None
    warmup_s: float | None = None
    iters: int | None = None
    duration_s: float | None = None
    round_s: float = 0.1  # length of one artifact's chunk within a round
    settle_s: float = 0.02  # pause between chunks so one backend's spinning thread pool does not tax the next
    seed: int = 0
    keep_freed_memory: bool = True  # PyTorch on the CPU: see keep_freed_memory(); False times it as a plain loop

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise EdgetlError(f"unknown --mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if not self.batches or any(int(b) < 1 for b in self.batches):
            raise EdgetlError(f"--batch {','.join(map(str, self.batches))}: batch sizes must be positive integers")

    @property
    def min_warmup(self) -> tuple[int, float]:
        if self.warmup_iters is None and self.warmup_s is None:
            return 5, 0.5
        return self.warmup_iters or 0, self.warmup_s or 0.0

    @property
    def min_timed(self) -> tuple[int, float]:
        """(min iterations, min seconds); --iters alone means exactly that many calls, --duration alone
        still takes at least 20 calls; both together are both minimums."""
        if self.iters is None and self.duration_s is None:
            return 100, 2.0
        if self.iters is None:
            return 20, float(self.duration_s or 0.0)
        return self.iters, self.duration_s or 0.0


@dataclass
class BenchTarget:
    """One artifact to measure: a label for the table, its runner, and the file it came from."""

    label: str
    runner: Runner
    artifact: str
    times: dict[int, list[float]] = field(default_factory=dict)


def synthetic_images(n: int = 16, seed: int = 0, size: tuple[int, int] = (500, 375)) -> list[Image.Image]:
    """Camera-sized RGB images for e2e mode when no --data is given (smooth noise, not constant)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (size[1] // 25, size[0] // 25, 3), dtype=np.uint8)
        out.append(Image.fromarray(small, "RGB").resize(size, Image.Resampling.BILINEAR))
    return out


def _e2e_call(runner: Runner, images: list[Image.Image], batch: int) -> Callable[[], object]:
    """Host preprocessing (resize, crop, normalise from the runner's card) + copies + inference + copy back."""
    pre = runner.card.preprocess
    pool = _cycle(images)

    def call() -> object:
        return runner.infer(np.stack([eval_array(next(pool), pre) for _ in range(batch)]))

    return call


def _cycle(items: list[Image.Image]) -> Iterator[Image.Image]:
    while True:
        yield from items


def _make_call(target: BenchTarget, config: BenchConfig, batch: int, images: list[Image.Image]) -> Callable[[], object]:
    if config.mode == "e2e":
        return _e2e_call(target.runner, images, batch)
    rng = np.random.default_rng(config.seed)
    data = rng.standard_normal((batch, *target.runner.input_shape)).astype(np.float32)
    return target.runner.compute_call(data)


def _time(target: BenchTarget, fn: Callable[[], object], n: int, mode: str) -> list[float]:
    """e2e returns host arrays, so host time is the latency; compute uses the backend's own timer."""
    if mode == "e2e":
        from edgetl.runtime.timing import time_host

        return time_host(fn, n)
    return target.runner.time_calls(fn, n)


def _warm_up(target: BenchTarget, fn: Callable[[], object], config: BenchConfig) -> tuple[int, float]:
    """Run until both warm-up minimums hold; returns (calls, typical ms per call) to size the rounds.

    The typical call is the median of the second half: the first calls (allocation, kernel selection)
    would make the rounds' chunks too short.
    """
    want_n, want_s = config.min_warmup
    n, times = 0, []
    start = time.perf_counter()
    while n < max(want_n, 1) or time.perf_counter() - start < want_s:
        times += _time(target, fn, 1, config.mode)
        n += 1
    return n, float(np.median(times[len(times) // 2:]))


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Stop glibc handing freed buffers back to the OS, so a CPU framework is not timed on page faults.

    PyTorch eager on the CPU allocates its activations on every call; glibc's defaults return large freed
    blocks to the OS (munmap, heap trim), so every call faults the same memory in again. Measured on 2 cores,
    Lite0: 205 ms at batch 8 that way, 105 ms with freed memory kept (batch 32: 1.1 s and 0.38 s). ONNX
    Runtime and TensorRT keep their own arenas; PyTorch's CPU tuning guide gets the same with jemalloc.
    Process-wide and permanent; False where the C library is not glibc (nothing changed).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        mmap = libc.mallopt(M_MMAP_THRESHOLD, 2**31 - 1) or libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # older cap
        return bool(trim and mmap)
    except (OSError, AttributeError):  # not glibc (musl, macOS): leave the allocator alone
        return False


def bench_targets(targets: Sequence[BenchTarget], config: BenchConfig,
                  images: list[Image.Image] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Measure every target at every batch size, interleaved; one schema result dict per (target, batch)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if not targets:
        raise EdgetlError("nothing to benchmark; pass at least one artifact")
    images = images or synthetic_images(seed=config.seed)
    kept = config.keep_freed_memory and _keep_memory_for_torch_cpu(targets)
    min_n, min_s = config.min_timed
    exact = config.iters is not None and config.duration_s is None
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), transient=True, disable=not show_progress(progress),
                  auto_refresh=False) as bar:  # no refresh thread competing with the timed calls
        task = bar.add_task("benchmark", total=len(config.batches) * len(targets))
        for batch in config.batches:
            calls, chunk, warm, peak = {}, {}, {}, {}
            for t in targets:
                bar.update(task, description=f"warm-up {t.label} @ batch {batch}", refresh=True)
                calls[t.label] = _make_call(t, config, batch, images)
                warm[t.label], per_call = _warm_up(t, calls[t.label], config)
                peak[t.label] = _steady_peak(t.runner, calls[t.label])  # before other targets allocate
                chunk[t.label] = max(MIN_CHUNK, int(config.round_s * 1000 / max(per_call, 1e-3)))
                t.times[batch] = []
            spent = dict.fromkeys(calls, 0.0)
            rounds = 0
            while True:
                pending = [t for t in targets
                           if len(t.times[batch]) < min_n or (not exact and spent[t.label] < min_s)]
                if not pending:
                    break
                if not exact:  # every artifact runs in every round, so all see the same machine state
                    pending = list(targets)
                rounds += 1
                for t in pending:
                    bar.update(task, description=f"{t.label} @ batch {batch} (round {rounds})")
                    n = min(chunk[t.label], min_n - len(t.times[batch])) if exact else chunk[t.label]
                    bar.refresh()
                    if t.runner.info.device == "cpu":
                        time.sleep(config.settle_s)
                    calls[t.label]()  # untimed: the first call after another backend ran pays for the switch
                    times = _time(t, calls[t.label], n, config.mode)
                    t.times[batch] += times
                    spent[t.label] += sum(times) / 1000
            for t in targets:
                results.append(_result(t, batch, config, warm[t.label], rounds, len(targets), peak[t.label], kept))
                bar.advance(task)
                bar.refresh()
    return results


def _steady_peak(runner: Runner, call: Callable[[], object], calls: int = 3) -> float | None:
    """Peak device memory of a few calls after warm-up: what running the model takes, without one-time costs
    (cuDNN's algorithm search tries workspaces of gigabytes at a new shape; compiling allocates too).
    Runners that measure no device memory (every CPU runner) cost no extra calls."""
    if runner.info.device == "cpu" or type(runner).peak_memory_mb is Runner.peak_memory_mb:
        return None
    runner.reset_peak_memory()
    for _ in range(calls):
        call()
    return runner.peak_memory_mb()


def _keep_memory_for_torch_cpu(targets: Sequence[BenchTarget]) -> bool:
    """:func:`keep_freed_memory` when PyTorch is timed on the CPU; whether it is in effect."""
    torch_cpu = any(t.runner.info.backend == "torch" and t.runner.info.device == "cpu" for t in targets)
    return torch_cpu and keep_freed_memory()


def _result(t: BenchTarget, batch: int, config: BenchConfig, warmup: int, rounds: int,
            n_targets: int, peak_mb: float | None, memory_kept: bool = False) -> dict[str, Any]:
    info, lat = t.runner.info, latency_stats(t.times[batch])
    options = {k: info.details[k] for k in OPTION_KEYS if info.details.get(k) is not None}
    if memory_kept and info.device == "cpu":
        options["malloc"] = "freed memory kept (glibc mallopt)"
    if t.runner.runs_as(batch):  # a static or capped batch range: the figures are for what really ran
        options["runs_as"] = t.runner.runs_as(batch)
    return {
        "model": t.runner.card.arch, "artifact": t.artifact, "backend": info.backend,
        "precision": info.precision if info.precision in PRECISIONS else "unknown",
        "device": info.device, "provider": info.details.get("provider"), "mode": config.mode, "batch": batch,
        "iters": len(t.times[batch]), "warmup_iters": warmup, "latency_ms": lat,
        "throughput_ips": throughput_ips(batch, lat["mean"]), "peak_memory_mb": peak_mb,
        "label": t.label, "timer": "perf_counter_ns" if config.mode == "e2e" else t.runner.timer_name,
        "rounds": rounds, "interleaved_with": n_targets - 1,
        "options": options,
    }


def artifact_label(path: str | Path, runner: Runner) -> str:
    """Short table label: file or run-dir name, backend and precision."""
    p = Path(path)
    name = p.name if p.suffix else p.name or str(p)
    # what tells two artifacts of one backend and precision apart: torch's mode, the INT8 target
    extra = runner.info.details.get("mode" if runner.info.backend == "torch" else "int8_target")
    return f"{name} [{runner.info.backend}/{runner.info.precision}{'/' + extra if extra else ''}]"
