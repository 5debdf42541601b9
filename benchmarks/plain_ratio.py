"""`edgetl bench` against the plain ONNX Runtime loop a user writes to check it: latencies and speed-up ratios.

The user's check, literally: each ONNX file timed alone in its own process by the simplest loop
(`InferenceSession` with ORT's defaults, warm-up, then `session.run` calls), against `edgetl bench` of all the
files side by side in one process. Machines drift between processes, so the two are repeated in alternation
(plain then edgetl, edgetl then plain, …) and the median over repetitions is reported. For each file and batch:
edgetl's latency over the plain loop's, and its speed-up over the first file against the plain loops' speed-up.
Writes benchmarks/results/cpu/plain_ratio.json.

  python benchmarks/plain_ratio.py A.onnx B.onnx … [--batch 1,8] [--reps 3]
  python benchmarks/plain_ratio.py            # the ImageNet Lite0 files benchmarks/cpu_imagenet.sh exports
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
LITE0 = ROOT.parent / "build" / "cpu_imagenet" / "lite0" / "trt"
DEFAULT_FILES = [LITE0 / n for n in ("model.onnx", "model.fp16.onnx", "model.int8-cpu.onnx")]  # the CPU-target INT8


def plain_loop(path: Path, batch: int, calls: int, warmup: int, seconds: float) -> dict[str, float]:
    """What a user writes: a session with ORT's defaults, a random batch, warm-up, then timed calls.

    At least ``seconds`` of them: with 100 calls (about a second at batch 1) the plain loops came out 15-38%
    faster than `edgetl bench`'s minute-long run on the shared 2-core host, with 8 s each within 10%; short
    bursts from an idle start look faster there than sustained load, which is how `edgetl bench` runs.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    x = np.random.default_rng(0).standard_normal((batch, *inp.shape[1:])).astype(dtype)
    for _ in range(warmup):
        session.run(None, {inp.name: x})
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < calls or time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        session.run(None, {inp.name: x})
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return {"mean": float(np.mean(times)), "p50": float(np.median(times))}


def run_plain(path: Path, batch: int, calls: int, warmup: int, seconds: float) -> dict[str, float]:
    """:func:`plain_loop` in a fresh process, as the user's own script would run."""
    cmd = [sys.executable, __file__, "--plain", str(path), "--batch", str(batch), "--calls", str(calls),
           "--warmup", str(warmup), "--seconds", str(seconds)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def run_edgetl(files: list[Path], batches: list[int]) -> dict[tuple[str, int], dict[str, float]]:
    """`edgetl bench FILES --batch …` with its defaults; (file, batch) → mean and p50 ms."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "edgetl", "bench", *map(str, files), "--batch", ",".join(map(str, batches)),
               "--no-progress", "--json", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        doc = json.loads(out.read_text())
    return {(r["artifact"], r["batch"]): {"mean": r["latency_ms"]["mean"], "p50": r["latency_ms"]["p50"]}
            for r in doc["results"]}


def measure(files: list[Path], batches: list[int], reps: int, calls: int, warmup: int,
            seconds: float) -> list[dict[str, Any]]:
    keys = [(str(f), b) for f in files for b in batches]
    plain: dict[tuple[str, int], list[dict[str, float]]] = {k: [] for k in keys}
    edgetl: dict[tuple[str, int], list[dict[str, float]]] = {k: [] for k in keys}
    for rep in range(reps):
        steps = ["plain", "edgetl"] if rep % 2 == 0 else ["edgetl", "plain"]
        for step in steps:
            if step == "edgetl":
                for k, v in run_edgetl(files, batches).items():
                    edgetl[k].append(v)
            else:
                for f, b in keys:
                    plain[(f, b)].append(run_plain(Path(f), b, calls, warmup, seconds))
        print(f"repetition {rep + 1}/{reps} done", file=sys.stderr)
    return [row(k, plain, edgetl, (str(files[0]), k[1])) for k in keys]


def row(key: tuple[str, int], plain: dict, edgetl: dict, base: tuple[str, int]) -> dict[str, Any]:
    """Medians over repetitions; speed-ups are taken within each repetition, then the median."""
    def med(runs: list[dict[str, float]], stat: str) -> float:
        return float(np.median([r[stat] for r in runs]))

    def speedup(runs: dict, stat: str) -> float:
        return float(np.median([b[stat] / r[stat] for b, r in zip(runs[base], runs[key], strict=True)]))

    out: dict[str, Any] = {"artifact": Path(key[0]).name, "batch": key[1], "reps": len(plain[key]),
                           "plain_mean_ms_each": [r["mean"] for r in plain[key]],  # the spread between processes
                           "edgetl_mean_ms_each": [r["mean"] for r in edgetl[key]]}
    for stat in ("mean", "p50"):
        out[f"plain_{stat}_ms"], out[f"edgetl_{stat}_ms"] = med(plain[key], stat), med(edgetl[key], stat)
        out[f"edgetl_over_plain_{stat}"] = float(np.median(
            [e[stat] / p[stat] for e, p in zip(edgetl[key], plain[key], strict=True)]))
        out[f"plain_speedup_{stat}"], out[f"edgetl_speedup_{stat}"] = speedup(plain, stat), speedup(edgetl, stat)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", type=Path, help="ONNX files; the first is the speed-up baseline")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--reps", type=int, default=4, help="alternating repetitions of plain loops and edgetl bench")
    p.add_argument("--calls", type=int, default=100, help="plain loop: timed calls")
    p.add_argument("--warmup", type=int, default=10, help="plain loop: warm-up calls")
    p.add_argument("--seconds", type=float, default=8.0, help="plain loop: timed seconds, at least")
    p.add_argument("--plain", type=Path, default=None, help=argparse.SUPPRESS)  # one plain loop, for run_plain
    p.add_argument("--out", type=Path, default=ROOT / "results" / "cpu" / "plain_ratio.json")
    args = p.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    if args.plain:
        print(json.dumps(plain_loop(args.plain, batches[0], args.calls, args.warmup, args.seconds)))
        return

    from edgetl.bench.schema import host_info
    from edgetl.card import library_versions
    from edgetl.io import atomic_write_json

    files = args.files or DEFAULT_FILES
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not found; run `bash benchmarks/cpu_imagenet.sh` first or pass files")
    rows = measure(files, batches, args.reps, args.calls, args.warmup, args.seconds)
    for r in rows:
        spread = f"{min(r['plain_mean_ms_each']):.1f}-{max(r['plain_mean_ms_each']):.1f}"
        print(f"{r['artifact']:>20} b{r['batch']}: plain {r['plain_mean_ms']:.2f} ms ({spread}), "
              f"edgetl {r['edgetl_mean_ms']:.2f} ms "
              f"(x{r['edgetl_over_plain_mean']:.3f}); speed-up over {files[0].name}: plain "
              f"{r['plain_speedup_mean']:.2f}x, edgetl {r['edgetl_speedup_mean']:.2f}x")
    atomic_write_json(args.out, {
        "schema": "edgetl.plain_ratio/1", "host": host_info(), "versions": library_versions(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "baseline": files[0].name,
        "method": f"plain: each file alone in its own process, ORT defaults, >= {args.calls} calls and >= "
                  f"{args.seconds:g} s, per-call perf_counter_ns; edgetl: "
                  "`edgetl bench FILES --batch …` defaults; alternating repetitions, medians",
        "results": rows})
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()
