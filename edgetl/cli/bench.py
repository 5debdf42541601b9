"""Benchmark artifacts side by side: latency percentiles, throughput and peak memory per batch size.

Several artifacts are measured interleaved in one process; the table shows each one's speed-up over
the first. `compute` times inference on data already on the device; `e2e` adds host preprocessing
(resize, crop, normalise from each artifact's card) and copies. Warm-up is excluded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    p.add_argument("--mode", choices=("compute", "e2e"), default="compute")
    p.add_argument("--device", default=None, help="cpu or cuda (default: best available per artifact)")
    p.add_argument("--provider", default=None, help="ONNX Runtime provider for .onnx files (cpu, cuda, tensorrt)")
    warm = p.add_mutually_exclusive_group()
    warm.add_argument("--warmup-iters", type=non_negative_int, default=None, help="warm-up calls (default: >= 5 and >= 0.5 s)")
    warm.add_argument("--warmup-s", type=non_negative_float, default=None, help="warm-up seconds")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="timed calls (default: >= 100 calls and >= 2 s); with --duration both are minimums")
    p.add_argument("--duration", type=positive_float, default=None,
                   help="timed seconds per artifact and batch (at least 20 calls)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for ONNX Runtime sessions and PyTorch (process-wide) (default: each library's)")
    p.add_argument("--half", action="store_true", help="PyTorch artifacts: FP16 (CUDA only)")
    p.add_argument("--channels-last", action="store_true", help="PyTorch artifacts: channels-last memory format")
    p.add_argument("--compile", nargs="?", const="default", default=None,
                   help="PyTorch artifacts: torch.compile (mode: default, reduce-overhead, max-autotune, "
                        "frozen = weights as constants, BatchNorm folded, CUDA graphs on CUDA)")
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT engines and PyTorch (CUDA, eager): one CUDA graph per batch size")
    p.add_argument("--data", type=Path, default=None, help="e2e mode: folder of real images (default: synthetic)")
    p.add_argument("--json", type=output_file, default=None, help="write the edgetl.bench/1 JSON here")
    p.add_argument("--md", type=output_file, default=None, help="write a Markdown table here")
    p.add_argument("--plot", type=plot_file, default=None,
                   help="write a plot of latency / throughput vs batch here (.png, .svg or .pdf)")
    p.add_argument("--merge", type=Path, nargs="+", default=None, metavar="FILE",
                   help="merge existing bench JSON files (e.g. from the C++ tool) into one table instead of measuring")
    p.add_argument("--trtexec", action="store_true", help="also run trtexec on .engine artifacts and report the ratio")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _runner_kwargs(path: Path, args: argparse.Namespace) -> dict[str, object]:
    from edgetl.runtime.loader import artifact_kind

    kind = artifact_kind(path)
    if kind == "torch":
        return {"half": args.half, "channels_last": args.channels_last, "compile": args.compile or False,
                "threads": args.threads, "cuda_graph": args.cuda_graph}
    if kind == "onnx":
        return {"threads": args.threads}
    if kind == "tensorrt":
        return {"cuda_graph": args.cuda_graph}
    return {}


def _load_images(data: Path | None) -> list | None:
    """Up to 64 decoded images of ``data`` for --mode e2e; files that do not decode are listed and left out."""
    if data is None:
        return None
    from edgetl.data.folder import check_images, list_image_files, report_skipped
    from edgetl.data.images import load_rgb

    good, skipped = check_images(list_image_files(data)[:64])
    report_skipped(skipped)
    if not good:
        raise EdgetlError(f"{data}: no readable images for --mode e2e; point --data to a folder of photos")
    return [load_rgb(p) for p in good]


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
    if doc.get("warning"):
        print(f"warning: {doc['warning']}", file=sys.stderr)
    shaky = [f"{report.label_of(r)} batch {r['batch']}" for r in doc["results"] if report.unstable(r)]
    if shaky:
        print(f"warning: unstable timings (p99 > {report.UNSTABLE_RATIO:g}x p50) for {', '.join(shaky)}: the machine "
              "was busy or ran more threads than it has free cores; re-run on a quiet machine or with --threads N, "
              "and compare p50", file=sys.stderr)
    few = sorted({r["iters"] for r in doc["results"] if r["iters"] < 100})
    if few:
        print(f"note: some p99 figures rest on only {few[0]} timed calls; use the default (>= 100 calls) or "
              "--iters 100 or more for a stable p99", file=sys.stderr)
    if args.json:
        atomic_write_json(args.json, doc)
    if args.md:
        report.write_markdown(doc, args.md)
    if args.plot:
        report.write_plot(doc, args.plot)
    return 0


def _measure(args: argparse.Namespace) -> dict:
    from contextlib import ExitStack

    from edgetl.bench.harness import (
        BenchConfig,
        BenchTarget,
        artifact_label,
        bench_targets,
    )
    from edgetl.bench.schema import make_document
    from edgetl.runtime.loader import artifact_kind, runner_from_artifact

    if args.provider and not any(artifact_kind(p) == "onnx" for p in args.artifacts):
        raise EdgetlError(f"--provider {args.provider} applies to .onnx artifacts and none was given; drop it")
    if args.data is not None and args.mode != "e2e":
        raise EdgetlError("--data feeds --mode e2e (compute mode times synthetic device-resident input); "
                          "add --mode e2e or drop --data")
    config = BenchConfig(batches=args.batch, mode=args.mode, warmup_iters=args.warmup_iters,
                         warmup_s=args.warmup_s, iters=args.iters, duration_s=args.duration)
    if args.trtexec:
        from edgetl.bench.trtexec import find_trtexec

        find_trtexec()  # fail before measuring anything
    with ExitStack() as stack:
        targets = []
        for path in args.artifacts:
            provider = args.provider if path.suffix.lower() == ".onnx" else None
            runner = stack.enter_context(runner_from_artifact(path, device=args.device, provider=provider,
                                                              **_runner_kwargs(path, args)))
            targets.append(BenchTarget(artifact_label(path, runner), runner, str(path)))
        _unique_labels(targets)
        results = bench_targets(targets, config, images=_load_images(args.data), progress=not args.no_progress)
        gpu = next((t.runner.info.details.get("gpu") for t in targets if t.runner.info.device == "cuda"), None)
        if gpu is None and any(t.runner.info.device == "cuda" for t in targets):
            gpu = _cuda_name()
        doc = make_document(results, gpu=gpu)
        if args.trtexec:
            doc["trtexec"] = _trtexec(targets, results)
    return doc


def _unique_labels(targets: list) -> None:
    seen: dict[str, int] = {}
    for t in targets:
        seen[t.label] = seen.get(t.label, 0) + 1
        if seen[t.label] > 1:
            t.label = f"{t.label} #{seen[t.label]}"


def _cuda_name() -> str | None:
    try:
        import torch

        return str(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    except ImportError:
        return None


def _trtexec(targets: list, results: list[dict]) -> list[dict]:
    from edgetl.bench.trtexec import trtexec_comparison

    out = []
    for t in targets:
        if t.runner.info.backend != "tensorrt":
            continue
        for r in results:
            if r["label"] == t.label and r["mode"] == "compute":
                cmp = trtexec_comparison(r, t.artifact, t.runner.info.input_name, t.runner.input_shape)
                print(f"trtexec {t.label} batch {r['batch']}: edgetl/trtexec latency ratio "
                      f"{cmp['latency_ratio']:.3f}, throughput ratio {cmp['throughput_ratio']:.3f}")
                out.append({"label": t.label, **cmp})
    if not out:
        print("note: --trtexec compares TensorRT engines in --mode compute only; none were benchmarked", file=sys.stderr)
    return out
