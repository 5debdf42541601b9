"""Refit an artifact's temperature on labelled images like the ones it will see (another camera, light or site).

The temperature makes the probabilities `edgetl predict` states match how often the model is right; training
fits it on its validation set. This refits it on the artifact's own answers over --data and writes it where
the runtime reads it (model.json, the ONNX metadata and its manifest entry, or the engine's .json record), when
it lowers the loss on held-out folds below the current temperature. Answers and parity do not change.
Judge the result with `edgetl eval` on other images than --data.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from edgetl.cli.args import add_data_arguments, positive_int
from edgetl.errors import warn

if TYPE_CHECKING:
    from edgetl.recalibrate import Refit

HELP = "refit the temperature of an artifact's probabilities on labelled images"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="ARTIFACT", help="run directory, its best.safetensors, .onnx or engine file")
    add_data_arguments(p, "like the deployment's, at least 20")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per inference call")
    p.add_argument("--dry-run", action="store_true", help="fit and report; write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from edgetl.data.folder import report_skipped
    from edgetl.info import warn_if_failed_export
    from edgetl.io import json_text
    from edgetl.recalibrate import refit_temperature

    warn_if_failed_export(args.artifact)
    refit = refit_temperature(args.artifact, args.data, device=args.device, batch_size=args.batch_size,
                              write=not args.dry_run, progress=not args.json, split=args.split)
    if args.json:
        print(json_text({**dataclasses.asdict(refit), "fitted": refit.fitted}))
        return 0
    report_skipped([(Path(p), r) for p, r in refit.skipped])
    print_refit(refit, args.dry_run)
    return 0


def print_refit(refit: Refit, dry_run: bool = False) -> None:
    """Before and after, side by side, and what was written (or why nothing was)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if refit.warning:
        warn(refit.warning)
    shown = refit.kept is None
    table = Table(title=f"{refit.artifact} on {refit.data}: {refit.images} images",
                  caption="after: each half of the images at the temperature fitted on the other half"
                  if shown else None)
    for name in ("", "temperature", "mean top-1 probability", "accuracy", "ECE", "loss"):
        table.add_column(name, justify="right" if name else "left")
    before = refit.before
    table.add_row("before", f"{refit.old_temperature:.4g}", f"{before['mean_confidence']:.3f}",
                  f"{refit.accuracy:.3f}", f"{before['ece']:.3f}", _loss(refit.loss_before))
    if shown:
        table.add_row("after", f"{refit.temperature:.4g}", f"{refit.heldout_confidence:.3f}",
                      f"{refit.accuracy:.3f}", f"{refit.heldout_ece:.3f}", _loss(refit.heldout_loss))
    console.print(table)
    if not shown:
        held = f" (held-out loss {refit.heldout_loss:.4f})" if refit.heldout_loss is not None else ""
        console.print(f"temperature kept at {refit.old_temperature:.4g}: {refit.kept}{held}; nothing written",
                      highlight=False)
    elif dry_run:
        console.print(f"--dry-run: temperature {refit.temperature:.4g} not written", highlight=False)
    elif refit.written:
        console.print(f"wrote temperature {refit.temperature:.4g} into {', '.join(refit.written)}; answers are "
                      "unchanged, only the probabilities stated", highlight=False)
    else:
        console.print(f"temperature {refit.temperature:.4g} is the one the artifact has; nothing written",
                      highlight=False)


def _loss(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"
