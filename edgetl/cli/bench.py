"""Benchmark artifacts side by side: latency percentiles, throughput and peak memory per batch size.

Several artifacts are measured interleaved in one process; the table shows each one's speed-up over
the first. `compute` times inference on data already on the device; `e2e` adds host preprocessing
(resize, crop, normalise from each artifact's card) and copies. Warm-up is excluded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgetl.cli.args import (
    batch_sizes,
    non_negative_float,
    non_negative_int,
    output_file,
    plot_file,
    positive_float,
    positive_int,
)
from edgetl.errors import EdgetlError

HELP = "benchmark artifacts (latency, throughput, memory) side by side"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifacts", nargs="*", metavar="ARTIFACT", type=Path,
                   help="run dir, .safetensors, .onnx, .engine/.plan or .pt2; the first is the speed-up baseline")
    p.add_argument("--batch", type=batch_sizes, default=[1], help="batch sizes, comma-separated (e.g. 1,8,32)")
    p.add_argument("--mode", choices=("compute", "e2e"), default="compute",
                   help="compute: inference on device-resident input; e2e: with preprocessing and copies")
    p.add_argument("--device", default=None, help="cpu or cuda (default: best available per artifact)")
    p.add_argument("--provider", default=None,
                   help="ONNX Runtime provider for .onnx files: cpu, cuda or tensorrt (default: the best present)")
    warm = p.add_mutually_exclusive_group()
    warm.add_argument("--warmup-iters", type=non_negative_int, default=None, help="warm-up "
                                                                                  "calls (default: >= 5 and >= 0.5 s)")
    warm.add_argument("--warmup-s", type=non_negative_float, default=None, help="warm-up seconds")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="timed calls (default: >= 100 calls and >= 2 s); with --duration both are minimums")
    p.add_argument("--duration", type=positive_float, default=None,
                   help="timed seconds per artifact and batch (at least 20 calls)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for ONNX Runtime sessions and PyTorch (process-wide) (default: each library's)")
    p.add_argument("--half", action="store_true", help="PyTorch artifacts: FP16 (CUDA only)")
    p.add_argument("--channels-last", action="store_true", help="PyTorch artifacts: channels-last memory format")
    p.add_argument("--compile", nargs="?", const="default", default=None,
                   help="PyTorch artifacts: torch.compile (mode: default, reduce-overhead, max-autotune, "
                        "frozen = weights as constants, BatchNorm folded, CUDA graphs on CUDA; "
                        "frozen-max-autotune = frozen with tuned kernels, minutes to compile)")
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT engines and PyTorch (CUDA, "
                                                             "eager): one CUDA graph per batch size")
    p.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                   help="PyTorch on the CPU: keep freed memory in the process (glibc mallopt, as jemalloc does) so "
                        "eager is not timed on page faults; --no-keep-freed-memory times it as a plain loop runs")
    p.add_argument("--data", type=Path, default=None, help="e2e mode: folder of real images (default: synthetic)")
    p.add_argument("--json", type=output_file, default=None, help="write the edgetl.bench/1 JSON here")
    p.add_argument("--md", type=output_file, default=None, help="write a Markdown table here")
    p.add_argument("--plot", type=plot_file, default=None,
                   help="write a plot of latency / throughput vs batch here (.png, .svg or .pdf)")
    p.add_argument("--merge", type=Path, nargs="+", default=None, metavar="FILE",
                   help="merge existing bench JSON files (e.g. from the C++ tool) into one table instead of measuring")
    p.add_argument("--trtexec", action="store_true", help="also run trtexec on .engine artifacts and report the ratio")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from edgetl.bench import report
    from edgetl.io import atomic_write_json

    if args.merge:
        if args.artifacts:
            raise EdgetlError("--merge takes JSON files only; do not also pass artifacts to measure")
        doc = report.merge_documents(args.merge)
    else:
        if not args.artifacts:
            raise EdgetlError("pass at least one ARTIFACT to benchmark (or --merge FILE…)")
        doc = _measure(args)
    report.console().print(report.rich_table(doc))
    for line in report.warnings(doc):
        print(line, file=sys.stderr)
    if args.json:
        atomic_write_json(args.json, doc)
    if args.md:
        report.write_markdown(doc, args.md)
    if args.plot:
        report.write_plot(doc, args.plot)
    return 0


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    from edgetl.bench.artifacts import RunnerSettings, bench_artifacts, load_bench_images
    from edgetl.bench.harness import BenchConfig
    from edgetl.data.folder import report_skipped

    if args.data is not None and args.mode != "e2e":
        raise EdgetlError("--data feeds --mode e2e (compute mode times synthetic device-resident input); "
                          "add --mode e2e or drop --data")
    config = BenchConfig(batches=args.batch, mode=args.mode, warmup_iters=args.warmup_iters,
                         warmup_s=args.warmup_s, iters=args.iters, duration_s=args.duration,
                         keep_freed_memory=args.keep_freed_memory)
    settings = RunnerSettings(device=args.device, provider=args.provider, threads=args.threads, half=args.half,
                              channels_last=args.channels_last, compile=args.compile, cuda_graph=args.cuda_graph)
    images = None
    if args.data is not None:
        images, skipped = load_bench_images(args.data)
        report_skipped(skipped)
    doc = bench_artifacts(args.artifacts, config, settings, images=images, progress=not args.no_progress,
                          trtexec=args.trtexec)
    for cmp in doc.get("trtexec", []):
        print(f"trtexec {cmp['label']} batch {cmp['batch']}: edgetl/trtexec latency ratio "
              f"{cmp['latency_ratio']:.3f}, throughput ratio {cmp['throughput_ratio']:.3f}")
    if args.trtexec and not doc.get("trtexec"):
        print("note: --trtexec compares TensorRT engines in --mode compute only; none were benchmarked",
              file=sys.stderr)
    return doc
