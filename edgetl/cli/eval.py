"""Evaluate a trained model (run directory, .safetensors, .onnx, engine) on a labelled image folder.

Writes eval.json (top-1/top-5, per-class precision/recall/F1, confusion matrix, worst mistakes) and
confusion.png into --out (default: the run directory, or the artifact's folder). For an artifact file the
names start with its own (model.int8.eval.json), so the reports of one export folder stay apart.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.cli.args import non_negative_int, positive_int

if TYPE_CHECKING:
    from edgetl.evaluate import EvalReport

HELP = "accuracy, per-class scores and confusion matrix on a labelled folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="RUN_DIR", help="run directory, .safetensors, .onnx or engine file")
    p.add_argument("--data", required=True, help="DIR/<class>/images (or DIR/val/<class>/images)")
    p.add_argument("--out", help="where eval.json and confusion.png go (default: beside the artifact)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per inference call")
    p.add_argument("--worst", type=non_negative_int, default=10, help="how many confident mistakes to list")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    import json

    from edgetl.data.folder import report_skipped
    from edgetl.evaluate import evaluate_artifact, save_report

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


def print_report(report: EvalReport) -> None:
    """Top-1/5 and loss, the per-class table and the most confident mistakes, for a person to read."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    top5 = f", top-5 {report.top5:.2f}%" if report.top5 is not None else ""
    console.print(f"[bold]{report.artifact}[/bold] on {report.data}: {report.images} images, "
                  f"top-1 {report.top1:.2f}%{top5}, loss {report.loss:.4f}", highlight=False)
    table = Table(title="per class", title_justify="left")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c in report.per_class:
        table.add_row(c.name, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support))
    console.print(table)
    if report.worst:
        worst = Table(title=f"most confident mistakes (paths under {report.data})", title_justify="left")
        worst.add_column("image", overflow="fold")  # the file name is what the user needs: never cut it
        for col in ("true", "predicted", "confidence"):
            worst.add_column(col)
        for m in report.worst:
            worst.add_row(_short_path(m.path, report.data), m.true, m.predicted, f"{m.confidence:.3f}")
        console.print(worst)


def _short_path(path: str, root: str) -> str:
    """``path`` relative to the evaluated folder when it lies inside it (tables stay readable)."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
