"""Evaluate a trained model (run directory, .safetensors, .onnx, engine) on a labelled image folder.

Writes eval.json (top-1/top-5, per-class precision/recall/F1, confusion matrix, worst mistakes) and
confusion.png into --out (default: the run directory, or the artifact's folder). For an artifact file the
names start with its own (model.int8.eval.json), so the reports of one export folder stay apart.
"""

from __future__ import annotations

import argparse

from edgetl.cli.args import non_negative_int, positive_int

HELP = "accuracy, per-class scores and confusion matrix on a labelled folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="RUN_DIR", help="run directory, .safetensors, .onnx or engine file")
    p.add_argument("--data", required=True, help="DIR/<class>/images (or DIR/val/<class>/images)")
    p.add_argument("--out", help="where eval.json and confusion.png go (default: beside the artifact)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--worst", type=non_negative_int, default=10, help="how many confident mistakes to list")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from edgetl.data.folder import report_skipped
    from edgetl.evaluate import evaluate_artifact, print_report, save_report

    artifact = Path(args.artifact)
    report = evaluate_artifact(artifact, args.data, device=args.device, batch_size=args.batch_size,
                               worst=args.worst, progress=not args.json)
    out = Path(args.out) if args.out else artifact if artifact.is_dir() else artifact.parent
    json_path, png_path = save_report(report, out, prefix="" if artifact.is_dir() else f"{artifact.stem}.")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        report_skipped([(Path(p), r) for p, r in report.skipped])
        print_report(report)
        print(f"wrote {json_path} and {png_path}")
    return 0
