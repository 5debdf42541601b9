"""Evaluate a trained model (run directory, .safetensors, .onnx, engine) on a labelled image folder.

Writes eval.json (top-1/top-5, per-class precision/recall/F1, confusion matrix, worst mistakes, calibration),
confusion.png and reliability.png (probabilities against accuracy) into --out (default: the run directory, or
the artifact's folder). For an artifact file the names start with its own (model.int8.eval.json), so the
reports of one export folder stay apart.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.cli.args import add_data_arguments, non_negative_int, positive_int
from edgetl.errors import warn
from edgetl.report import CLASS_ROWS

if TYPE_CHECKING:
    from edgetl.evaluate import EvalReport

HELP = "accuracy, per-class scores and confusion matrix on a labelled folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="RUN_DIR", help="run directory, .safetensors, .onnx or engine file")
    add_data_arguments(p)
    p.add_argument("--out", help="where eval.json and the plots go (default: beside the artifact)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per inference call")
    p.add_argument("--worst", type=non_negative_int, default=10, help="how many confident mistakes to list")
    p.add_argument("--all-classes", action="store_true",
                   help=f"list every class (default: all up to {CLASS_ROWS}, else the {CLASS_ROWS} weakest)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    from edgetl.data.folder import report_skipped
    from edgetl.evaluate import evaluate_artifact, save_report
    from edgetl.info import warn_if_failed_export
    from edgetl.io import json_text

    artifact = Path(args.artifact)
    warn_if_failed_export(artifact)
    report = evaluate_artifact(artifact, args.data, device=args.device, batch_size=args.batch_size,
                               worst=args.worst, progress=not args.json, split=args.split)
    out = Path(args.out) if args.out else artifact if artifact.is_dir() else artifact.parent
    prefix = "" if artifact.is_dir() else f"{artifact.stem}."
    json_path, confusion, reliability = save_report(report, out, prefix=prefix)
    if args.json:
        print(json_text(report.to_dict()))
    else:
        report_skipped([(Path(p), r) for p, r in report.skipped])
        print_report(report, args.all_classes)
        print(f"wrote {json_path}, {confusion} and {reliability}")
    return 0


def print_report(report: EvalReport, all_classes: bool = False) -> None:
    """Top-1/5, macro scores and loss, the per-class table and the most confident mistakes, for a person to read."""
    from rich.console import Console
    from rich.table import Table

    from edgetl.calibration import calibration_note
    from edgetl.evaluate import interval_text

    console = Console()
    top5 = f", top-5 {report.top5:.2f}%" if report.top5 is not None else ""
    top1 = f"top-1 {report.top1:.2f}%{interval_text(report.top1_ci)}"
    console.print(f"[bold]{report.artifact}[/bold] on {report.data}: {report.images} images, "
                  f"{top1}{top5}, loss {report.loss:.4f}", highlight=False)
    if report.warning:
        warn(report.warning)
    cal = report.calibration
    if cal:
        console.print(f"probabilities: mean top-1 {cal['mean_confidence']:.3f} against accuracy {cal['accuracy']:.3f}, "
                      f"ECE {cal['ece']:.3f} (temperature {cal.get('temperature', 1.0):.3g})", highlight=False)
    note = calibration_note(cal, cal.get("temperature", 1.0))
    if note:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if report.macro:
        avg = report.macro
        console.print(f"macro over {avg['classes']} classes with images: precision {avg['precision']:.3f}, "
                      f"recall (balanced accuracy) {avg['recall']:.3f}, F1 {avg['f1']:.3f}", highlight=False)
    shown = report.per_class
    title = "per class"
    if len(shown) > CLASS_ROWS and not all_classes:
        shown = report.weakest(CLASS_ROWS)
        title = f"the {len(shown)} weakest of {len(report.per_class)} classes (lowest F1; all in eval.json, " \
                "or --all-classes)"
    table = Table(title=title, title_justify="left")
    table.add_column("class", overflow="fold")  # two long names may differ only at the end: never cut them
    for col in ("precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for c in shown:
        table.add_row(c.name, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support))
    console.print(table)
    if report.worst:
        import os

        root = report.data if all(Path(m.path).is_relative_to(report.data) for m in report.worst) else \
            os.path.commonpath([str(Path(m.path).parent) for m in report.worst])  # a CSV's rows, a made split
        worst = Table(title=f"most confident mistakes (paths under {root})", title_justify="left")
        worst.add_column("image", overflow="fold")  # the file name is what the user needs: never cut it
        for col in ("true", "predicted"):
            worst.add_column(col, overflow="fold")
        worst.add_column("confidence")
        for m in report.worst:
            worst.add_row(_short_path(m.path, root), m.true, m.predicted, f"{m.confidence:.3f}")
        console.print(worst)


def _short_path(path: str, root: str) -> str:
    """``path`` relative to the evaluated folder when it lies inside it (tables stay readable)."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
