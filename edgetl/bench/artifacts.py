"""Benchmark artifact files: open each in its runner, time them interleaved, describe them in one document.

The one entry point that ``edgetl bench`` and the demo share, so both measure and record the same way.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from edgetl.bench.harness import BenchConfig, BenchTarget, artifact_label, bench_targets
from edgetl.errors import EdgetlError


@dataclass
class RunnerSettings:
    """How each artifact is opened for timing; None and False mean the backend's default."""

    device: str | None = None
    provider: str | None = None  # ONNX Runtime provider, .onnx files only
    threads: int | None = None
    half: bool = False  # PyTorch only, as are channels_last and compile
    channels_last: bool = False
    compile: str | None = None
    cuda_graph: bool = False  # PyTorch (CUDA, eager) and TensorRT

    def kwargs(self, path: Path) -> dict[str, Any]:
        """The options that ``path``'s backend takes (each backend refuses the others')."""
        from edgetl.runtime.loader import artifact_kind

        kind = artifact_kind(path)
        if kind == "torch":
            return {"half": self.half, "channels_last": self.channels_last, "compile": self.compile or False,
                    "threads": self.threads, "cuda_graph": self.cuda_graph}
        if kind == "onnx":
            return {"threads": self.threads, "provider": self.provider}
        if kind == "tensorrt":
            return {"cuda_graph": self.cuda_graph}
        return {}


def bench_artifacts(paths: list[Path], config: BenchConfig, settings: RunnerSettings | None = None,
                    images: list[Image.Image] | None = None, progress: bool = True,
                    trtexec: bool = False) -> dict[str, Any]:
    """Time every artifact interleaved in this process; the ``edgetl.bench/1`` document.

    ``trtexec`` also times each TensorRT engine with NVIDIA's trtexec and records the ratios.
    """
    from edgetl.bench.schema import cpu_clock, load_average, make_document, other_cpu_share
    from edgetl.runtime.loader import artifact_kind, runner_from_artifact

    load_before = load_average()  # other work on the host, before this process loads or times anything
    settings = settings or RunnerSettings()
    if settings.provider and not any(artifact_kind(p) == "onnx" for p in paths):
        raise EdgetlError(f"--provider {settings.provider} applies to .onnx artifacts and none was given; drop it")
    if trtexec:
        from edgetl.bench.trtexec import find_trtexec

        find_trtexec()  # fail before measuring anything
    with ExitStack() as stack:
        targets = []
        for path in paths:
            runner = stack.enter_context(runner_from_artifact(path, device=settings.device, **settings.kwargs(path)))
            targets.append(BenchTarget(artifact_label(path, runner), runner, str(path)))
        _unique_labels(targets)
        clock, start = cpu_clock(), time.perf_counter()
        results = bench_targets(targets, config, images=images, progress=progress)
        other = other_cpu_share(clock, cpu_clock(), time.perf_counter() - start)
        doc = make_document(results, gpu=_gpu_name(targets), load_before=load_before, other_cpu=other)
        if trtexec:
            doc["trtexec"] = _trtexec(targets, results)
    return doc


def _unique_labels(targets: list[BenchTarget]) -> None:
    seen: dict[str, int] = {}
    for t in targets:
        seen[t.label] = seen.get(t.label, 0) + 1
        if seen[t.label] > 1:
            t.label = f"{t.label} #{seen[t.label]}"


def _gpu_name(targets: list[BenchTarget]) -> str | None:
    """The GPU the CUDA targets ran on: an engine's own record, else torch's name for the device."""
    cuda = [t for t in targets if t.runner.info.device == "cuda"]
    named = next((t.runner.info.details.get("gpu") for t in cuda if t.runner.info.details.get("gpu")), None)
    if named is not None or not cuda:
        return named
    try:
        import torch

        return str(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    except ImportError:
        return None


def _trtexec(targets: list[BenchTarget], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """trtexec's figures beside edgetl's for each TensorRT engine timed in compute mode."""
    from edgetl.bench.trtexec import trtexec_comparison

    out = []
    for t in targets:
        if t.runner.info.backend != "tensorrt":
            continue
        for r in results:
            if r["label"] == t.label and r["mode"] == "compute":
                out.append({"label": t.label, **trtexec_comparison(
                    r, t.artifact, t.runner.info.input_name, t.runner.input_shape,
                    dla_core=t.runner.info.details.get("dla_core"))})
    return out


def load_bench_images(data: Path, limit: int = 64) -> tuple[list[Image.Image], list[tuple[Path, str]]]:
    """Up to ``limit`` decoded images of ``data`` for e2e mode, and the files that did not decode."""
    from edgetl.data.folder import check_images, list_image_files
    from edgetl.data.images import load_rgb

    good, skipped = check_images(list_image_files(data)[:limit])
    if not good:
        raise EdgetlError(f"{data}: no readable images for --mode e2e; point --data to a folder of photos")
    return [load_rgb(p) for p in good], skipped
