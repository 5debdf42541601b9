"""Classify images with a trained model: class names and probabilities, best first."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgetl.cli.args import positive_int
from edgetl.errors import EdgetlError

HELP = "top-k classes for image files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="RUN_DIR", help="run directory, .safetensors, .onnx or engine file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--topk", type=positive_int, default=5, help="classes to list per image")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--json", action="store_true", help="one JSON document for machines")


def _check_files(images: list[str]) -> None:
    """Fail before loading the model when a path is a folder (``edgetl eval`` is the command for folders)."""
    for image in images:
        path = Path(image)
        if path.is_dir():
            raise EdgetlError(f"{path}: a folder; pass image files (e.g. {path}/*.jpg), or use "
                              "`edgetl eval` on a labelled folder")


def _present(images: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(files that exist, (path, reason) for those that do not): checked before the model loads."""
    present = [Path(image).is_file() for image in images]
    return ([image for image, ok in zip(images, present, strict=True) if ok],
            [(image, "no such file; check the path") for image, ok in zip(images, present, strict=True) if not ok])


def _none_usable(skipped: list[tuple[str, str]]) -> EdgetlError:
    return EdgetlError(f"{skipped[0][0]}: {skipped[0][1]}" + (f" (and {len(skipped) - 1} more unusable file(s))"
                                                              if len(skipped) > 1 else ""))


def run(args: argparse.Namespace) -> int:
    import json

    from edgetl.data.folder import report_skipped
    from edgetl.info import warn_if_failed_export
    from edgetl.runtime.loader import deployed_runner
    from edgetl.runtime.predictor import Predictor

    _check_files(args.images)
    images, skipped = _present(args.images)
    if not images:
        raise _none_usable(skipped)
    warn_if_failed_export(args.artifact)
    with deployed_runner(args.artifact, device=args.device) as runner:
        predictions, unreadable = Predictor(runner).predict_files(images, topk=args.topk, progress=not args.json)
        temperature, source = runner.card.temperature, runner.card.temperature_from()
    skipped += unreadable
    if not predictions:
        raise _none_usable(skipped)
    report_skipped([(Path(p), reason) for p, reason in skipped])
    code = 2 if skipped else 0  # every readable image is answered; the unreadable ones are the user's to fix
    from edgetl.data.imagenet import imagenet_description

    if args.json:
        answers = [p.to_dict() for p in predictions]
        for answer in (a for p in answers for a in p["top"]):  # the ImageNet head's classes say what they are
            if imagenet_description(answer["class"]):
                answer["description"] = imagenet_description(answer["class"])
        print(json.dumps({"artifact": str(args.artifact), "temperature": temperature, "predictions": answers,
                          "skipped": [{"path": p, "reason": r} for p, r in skipped]}, indent=2))
        return code
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, caption=f"probabilities at temperature {temperature:.3g} ({source})"
                  if temperature != 1 else None)
    table.add_column("image", overflow="fold")  # the whole path, wrapped, never cut to "…"
    table.add_column("class", overflow="fold")  # names may differ only at the end
    table.add_column("probability", justify="right")
    for pred in predictions:
        for rank, (name, prob) in enumerate(pred.top):
            described = imagenet_description(name)
            label = f"{name} ({described})" if described else name
            table.add_row(pred.source if rank == 0 else "", label, f"{prob:.4f}",
                          style="bold" if rank == 0 else None, end_section=rank == len(pred.top) - 1)
    Console().print(table)
    return code
