"""The same AOTInductor package timed by the C++ tool (cpp_bench's edgetl_bench) and by the Python runtime.

Both time compute mode: the input tensor is built once, then each call is timed on its own (C++:
std::chrono::steady_clock around AOTIModelPackageLoader::run; Python: perf_counter_ns around
AotiRunner.compute_call, exactly what `edgetl bench` times). Rounds alternate the order (C++ first, then
Python first, ...) so machine drift favours neither; per round each side times every batch size.
Python overhead per call = Python p50 - C++ p50 (median over rounds; also the per-round range and the
difference of each side's quietest round, since other load on a shared machine swamps small differences). Writes
benchmarks/results/cpp_vs_python.json (summary + the merged edgetl.bench/1 document of every round).

  python benchmarks/cpp_vs_python.py                      # test_resnet at 64 px, compiled once, cached
  python benchmarks/cpp_vs_python.py --pt2 runs/x/model.pt2 --batch 1,8 --rounds 5 --iters 200 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench_cache"
BUILD = ROOT / "build" / "cpp_bench"
OUT = ROOT / "benchmarks" / "results" / "cpp_vs_python.json"


def build_cpp_bench() -> Path:
    """Configure once and build incrementally, as `make cpp-bench` does."""
    import torch

    if not (BUILD / "CMakeCache.txt").is_file():
        subprocess.run(["cmake", "-S", str(ROOT / "cpp_bench"), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
                        f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(BUILD), "-j", "2"], check=True, capture_output=True)
    return BUILD / "edgetl_bench"


def default_pt2(arch: str, img_size: int, max_batch: int, threads: int) -> Path:
    """A randomly initialised timm model (the speed does not depend on the weights), compiled once per thread count:
    inductor compiles the thread count in (a package made under one thread has no OpenMP regions)."""
    import torch

    from edgetl.export.aoti import pt2_from_model
    from edgetl.models.factory import card_for, create_model

    out = CACHE / f"{arch}_{img_size}px_b{max_batch}_t{threads}.pt2"
    if not out.exists():
        torch.manual_seed(0)
        card = card_for(arch, [f"class{i}" for i in range(10)], img_size=img_size)
        pt2_from_model(create_model(card).eval(), card, out, max_batch=max_batch)
    return out


def time_cpp(exe: Path, pt2: Path, batches: list[int], iters: int, warmup: int, threads: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cpp.json"
        subprocess.run([str(exe), str(pt2), "--batch", ",".join(map(str, batches)), "--iters", str(iters),
                        "--warmup", str(warmup), "--threads", str(threads), "--json", str(out), "--quiet"], check=True)
        from edgetl.bench.schema import validate

        return list(validate(json.loads(out.read_text()))["results"])


def time_python(runner: Any, pt2: Path, batches: list[int], iters: int, warmup: int) -> list[dict[str, Any]]:
    from edgetl.bench.harness import BenchConfig, BenchTarget, bench_targets

    target = BenchTarget("python", runner, str(pt2))
    return bench_targets([target], BenchConfig(batches=batches, warmup_iters=warmup, iters=iters), progress=False)


def summarise(rounds: list[list[dict[str, Any]]], batches: list[int]) -> list[dict[str, Any]]:
    rows = []
    for batch in batches:
        def p50s(backend: str, b: int = batch) -> list[float]:
            return [r["latency_ms"]["p50"] for rnd in rounds for r in rnd
                    if r["backend"] == backend and r["batch"] == b]

        def means(backend: str, b: int = batch) -> list[float]:
            return [r["latency_ms"]["mean"] for rnd in rounds for r in rnd
                    if r["backend"] == backend and r["batch"] == b]

        cpp, py = statistics.median(p50s("cpp-aoti")), statistics.median(p50s("aoti"))
        diffs = [p - c for p, c in zip(p50s("aoti"), p50s("cpp-aoti"), strict=True)]
        rows.append({"batch": batch, "cpp_p50_ms": cpp, "python_p50_ms": py,
                     "cpp_mean_ms": statistics.median(means("cpp-aoti")),
                     "python_mean_ms": statistics.median(means("aoti")),
                     "python_overhead_us_per_call": (py - cpp) * 1000,
                     "python_overhead_us_per_round": [d * 1000 for d in diffs],
                     "python_over_cpp": py / cpp,
                     # the quietest round of each side: least disturbed by other load on a shared machine
                     "cpp_best_p50_ms": min(p50s("cpp-aoti")), "python_best_p50_ms": min(p50s("aoti")),
                     "python_overhead_us_best": (min(p50s("aoti")) - min(p50s("cpp-aoti"))) * 1000})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pt2", type=Path, default=None, help="AOTInductor package (default: compile --arch)")
    ap.add_argument("--arch", default="test_resnet")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=100, help="timed calls per batch, per round and side")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads on both sides (default 1: steadier on a shared machine)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from edgetl.bench.schema import make_document
    from edgetl.runtime.aoti import AotiRunner

    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batch.split(",")]
    exe = build_cpp_bench()
    pt2 = args.pt2 or default_pt2(args.arch, args.img_size, max(batches), args.threads)
    rounds: list[list[dict[str, Any]]] = []
    with AotiRunner(pt2) as runner:
        for i in range(args.rounds):
            sides = [lambda: time_cpp(exe, pt2, batches, args.iters, args.warmup, args.threads),
                     lambda: time_python(runner, pt2, batches, args.iters, args.warmup)]
            rounds.append([r for side in (sides if i % 2 == 0 else sides[::-1]) for r in side()])
    rows = summarise(rounds, batches)
    doc = make_document([r for rnd in rounds for r in rnd])
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "artifact": str(pt2),
              "model": doc["results"][0]["model"], "rounds": args.rounds, "iters": args.iters,
              "warmup": args.warmup, "threads": args.threads, "host": doc["host"], "summary": rows, "bench": doc}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from edgetl.io import atomic_write_json

    atomic_write_json(args.out, result)

    table = Table(title=f"{pt2.name}: C++ (edgetl_bench) vs Python (AotiRunner), CPU, {args.threads} thread(s), "
                        f"median of {args.rounds} rounds")
    for col in ("batch", "C++ p50 ms", "Python p50 ms", "Python overhead / call", "per-round range",
                "best rounds", "Python / C++"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["batch"]), f"{r['cpp_p50_ms']:.3f}", f"{r['python_p50_ms']:.3f}",
                      f"{r['python_overhead_us_per_call']:.1f} µs",
                      f"{min(r['python_overhead_us_per_round']):.0f} .. "
                      f"{max(r['python_overhead_us_per_round']):.0f} µs",
                      f"{r['cpp_best_p50_ms']:.3f} vs {r['python_best_p50_ms']:.3f} ms",
                      f"{r['python_over_cpp']:.3f}x")
    Console().print(table)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
