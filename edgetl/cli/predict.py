"""Classify images with a trained model: class names and probabilities, best first."""

from __future__ import annotations

import argparse

from edgetl.cli.args import positive_int

HELP = "top-k classes for image files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="RUN_DIR", help="run directory, .safetensors, .onnx or engine file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--topk", type=positive_int, default=5, help="classes to list per image")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--json", action="store_true", help="one JSON document for machines")


def _check_files(images: list[str]) -> None:
    """Fail before loading the model when a path is not a file (a typo, a folder, a glob that matched nothing)."""
    from pathlib import Path

    from edgetl.errors import EdgetlError

    for image in images:
        path = Path(image)
        if path.is_dir():
            raise EdgetlError(f"{path}: a folder; pass image files (e.g. {path}/*.jpg), or use `edgetl eval` on a "
                              "labelled folder")
        if not path.is_file():
            raise EdgetlError(f"{path}: no such file; check the path")


def run(args: argparse.Namespace) -> int:
    import json

    from edgetl.errors import EdgetlError
    from edgetl.runtime.loader import deployed_runner
    from edgetl.runtime.predictor import Predictor

    if args.topk < 1:
        raise EdgetlError(f"--topk {args.topk}: must be >= 1")
    _check_files(args.images)
    with deployed_runner(args.artifact, device=args.device) as runner:
        predictions = Predictor(runner).predict(args.images, topk=args.topk)
    if args.json:
        print(json.dumps({"artifact": str(args.artifact), "predictions": [p.to_dict() for p in predictions]}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True)
    table.add_column("image", overflow="fold")  # the whole path, wrapped, never cut to "…"
    table.add_column("class")
    table.add_column("probability", justify="right")
    for pred in predictions:
        for rank, (name, prob) in enumerate(pred.top):
            table.add_row(pred.source if rank == 0 else "", name, f"{prob:.4f}",
                          style="bold" if rank == 0 else None, end_section=rank == len(pred.top) - 1)
    Console().print(table)
    return 0
