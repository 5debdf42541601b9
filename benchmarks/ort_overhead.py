"""edgetl's ONNX Runtime runner, as `edgetl bench` times it, against a plain `session.run` loop.

Same ONNX file, same batch, same session options, one process, interleaved rounds (a fresh random order
every round, each chunk after one untimed call) so machine drift and the order favour none. Variants:
  plain      — the loop a user would write, on its own InferenceSession: run(None, {name: x}), one clock
               read around the whole chunk
  plain_same — the same plain loop on the runner's own session (separates harness cost from the
               session-to-session difference, which on a loaded machine is itself a few percent)
  bench      — what `edgetl bench --mode compute` times: OrtRunner.compute_call + per-call perf_counter_ns
  infer      — OrtRunner.infer(x): input checks + batch policy around session.run (the Predictor's path)
Overhead = variant mean / plain mean - 1. Also recorded: the wall time of the bench chunks not covered by
the per-call clock (µs per call) — what per-call timing could hide. Writes benchmarks/results/ort_overhead.json.

  python benchmarks/ort_overhead.py                          # ImageNet EfficientNet-Lite0 at 224 px
  python benchmarks/ort_overhead.py --onnx model.onnx --batch 1,8 --rounds 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
CACHE = ROOT.parent / "build" / "bench_cache"


def imagenet_onnx() -> Path:
    """FP32 ONNX of the ImageNet-pretrained EfficientNet-Lite0, exported once with edgetl's exporter."""
    from edgetl.export.onnx import onnx_from_model
    from edgetl.models.weights import imagenet_lite_model

    out = CACHE / "efficientnet_lite0_imagenet_fp32.onnx"
    if not out.exists():
        model, card = imagenet_lite_model("efficientnet_lite0")
        onnx_from_model(model, card, out)
    return out


def plain_loop(session: Any, name: str, x: np.ndarray, n: int) -> float:
    """Mean ms per call of the simplest loop: one clock read around n calls."""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        session.run(None, {name: x})
    return (time.perf_counter_ns() - t0) / 1e6 / n


def measure(onnx_path: Path, batch: int, rounds: int, calls: int, threads: int | None) -> dict[str, Any]:
    import onnxruntime as ort

    from edgetl.runtime.onnxruntime import OrtRunner

    runner = OrtRunner(onnx_path, providers=["cpu"], threads=threads)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, *runner.input_shape)).astype(np.float32)
    bench_call = runner.compute_call(x)
    gaps: list[float] = []

    def bench_variant(n: int) -> list[float]:
        t0 = time.perf_counter_ns()
        got = runner.time_calls(bench_call, n)
        gaps.append(((time.perf_counter_ns() - t0) / 1e6 - sum(got)) / n * 1000)  # µs per call outside timing
        return got

    variants = {
        "plain": lambda n: [plain_loop(session, name, x, n)] * n,
        "plain_same": lambda n: [plain_loop(runner.session, name, x, n)] * n,
        "bench": bench_variant,
        "infer": lambda n: runner.time_calls(lambda: runner.infer(x), n),
    }
    for fn in variants.values():  # warm-up, excluded
        fn(max(3, calls // 4))
    times: dict[str, list[float]] = {k: [] for k in variants}
    chunk_means: dict[str, list[float]] = {k: [] for k in variants}
    rng = np.random.default_rng(1)
    for _ in range(rounds):
        # a fresh order each round: with a fixed rotation each variant always followed the same one, and "plain"
        # (the only other session) always came right after a switch of sessions (seen: up to 15% slower)
        for key in rng.permutation(list(variants)):
            time.sleep(0.02)
            variants[key](1)  # untimed, as `edgetl bench` starts each chunk
            got = variants[key](calls)
            times[key] += got
            chunk_means[key].append(float(np.mean(got)))
    means = {k: float(np.mean(v)) for k, v in times.items()}
    # paired per round: robust to drift between rounds on a shared machine
    paired = {k: float(np.median(np.array(chunk_means[k]) / np.array(chunk_means["plain"]))) - 1
              for k in ("plain_same", "bench", "infer")}
    return {
        "batch": batch, "rounds": rounds, "calls_per_round": calls,
        "mean_ms": means,
        "p50_ms": {k: float(np.median(v)) for k, v in times.items() if k != "plain"},
        "overhead_vs_plain": {k: means[k] / means["plain"] - 1 for k in ("plain_same", "bench", "infer")},
        "overhead_vs_plain_same_session": {k: means[k] / means["plain_same"] - 1 for k in ("bench", "infer")},
        "overhead_vs_plain_median_paired_by_round": paired,
        "bench_untimed_gap_us_per_call": float(np.median(gaps)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", type=Path, default=None, help="ONNX file (default: ImageNet EfficientNet-Lite0)")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=20, help="calls per variant per round")
    p.add_argument("--threads", type=int, default=None, help="ORT intra-op threads for both (default: ORT's)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "ort_overhead.json")
    args = p.parse_args()

    from edgetl.bench.schema import host_info
    from edgetl.card import library_versions
    from edgetl.io import atomic_write_json

    onnx_path = args.onnx or imagenet_onnx()
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        row = measure(onnx_path, batch, args.rounds, args.calls, args.threads)
        rows.append(row)
        oh, same = row["overhead_vs_plain"], row["overhead_vs_plain_same_session"]
        m = row["mean_ms"]
        print(f"batch {batch}: plain {m['plain']:.3f} ms, plain on the runner's session {m['plain_same']:.3f} ms "
              f"({oh['plain_same']:+.2%}); edgetl bench {m['bench']:.3f} ms ({oh['bench']:+.2%} vs plain, "
              f"{same['bench']:+.2%} vs same session); runner.infer {m['infer']:.3f} ms ({oh['infer']:+.2%}, "
              f"{same['infer']:+.2%}); median of per-round paired ratios: bench "
              f"{row['overhead_vs_plain_median_paired_by_round']['bench']:+.2%}, infer "
              f"{row['overhead_vs_plain_median_paired_by_round']['infer']:+.2%}; untimed gap "
              f"{row['bench_untimed_gap_us_per_call']:.1f} µs/call")
    doc = {"schema": "edgetl.ort_overhead/1", "onnx": str(onnx_path.name), "host": host_info(),
           "versions": library_versions(), "threads": args.threads,
           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": rows,
           "note": "interleaved rounds in one process; overhead = mean / plain mean - 1"}
    atomic_write_json(args.out, doc)
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()
