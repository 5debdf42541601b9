"""Check that deployed artifacts still answer like the reference model, with an exit code.

All artifacts run on the same images, each with the preprocessing from its own metadata. Per candidate:
max / mean abs logit difference, cosine similarity, top-1 agreement, top-5 overlap, and top-1 accuracy
of each against the folder's labels. Default gates by precision: fp32 agreement 100% and max diff 1e-4
(per unit of the largest |reference logit|, at least 1); fp16 agreement >= 99.5%; int8 accuracy drop <= 1.0
point (without labels: top-1 disagreement <= 1.0 point) and centered cosine >= 0.9.
--min-agreement / --max-abs-diff / --max-accuracy-drop / --min-centered-cosine change that check where a gate has it;
--gate sets one precision's check.
INT8 models made for TensorRT run in ONNX Runtime with graph optimisation disabled, i.e. with the
float fake-quant numerics TensorRT uses. Exit 1 when a gate fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgetl.cli.args import (
    add_data_arguments,
    fraction,
    non_negative_float,
    non_negative_int,
    output_file,
    positive_int,
)
from edgetl.errors import EdgetlError

HELP = "compare artifacts with a reference on real images; exit 1 if a gate fails"


def gate_setting(text: str) -> tuple[str, float | None]:
    """``int8.max-abs-diff=0.5`` → ("int8.max_abs_diff", 0.5); ``=none`` → None (drop the check)."""
    from edgetl.parity import GATE_FIELDS, GATES

    name, sep, value = text.partition("=")
    scope, _, check = name.strip().lower().replace("-", "_").partition(".")
    if not sep or scope not in GATES or check not in GATE_FIELDS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected PRECISION.CHECK=VALUE with PRECISION one of {', '.join(GATES)} and CHECK one of "
            f"{', '.join(f.replace('_', '-') for f in GATE_FIELDS)}, e.g. int8.max-abs-diff=0.5")
    if value.strip().lower() == "none":
        return f"{scope}.{check}", None
    parse = fraction if check in ("min_agreement", "min_centered_cosine") else non_negative_float
    return f"{scope}.{check}", parse(value)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reference", type=Path, metavar="REFERENCE", help="the trained model (run dir) or any artifact")
    p.add_argument("candidates", type=Path, nargs="+", metavar="CANDIDATE", help="artifacts to check")
    add_data_arguments(p, "a folder of images without class folders gives agreement only")
    p.add_argument("--limit", type=positive_int, default=None, help="use at most N images "
                                                                    "(a seeded, class-mixed subset)")
    p.add_argument("--json", type=output_file, default=None, help="write the report (with the worst images) here")
    p.add_argument("--device", default=None, help="cpu or cuda (default: best available)")
    p.add_argument("--provider", default=None,
                   help="ONNX Runtime provider for .onnx candidates: cpu, cuda or tensorrt (default: the best present)")
    p.add_argument("--min-agreement", type=fraction, default=None,
                   help="minimum top-1 agreement (0-1) in the gates that check it")
    p.add_argument("--max-abs-diff", type=non_negative_float, default=None,
                   help="maximum abs logit difference in the gates that check it (FP32's by default), per unit "
                        "of the reference's largest |logit| when that exceeds 1")
    p.add_argument("--max-accuracy-drop", type=non_negative_float, default=None,
                   help="max top-1 drop in points in the gates that check it (INT8's)")
    p.add_argument("--min-centered-cosine", type=fraction, default=None,
                   help="minimum mean cosine (0-1) of the logits less the reference's mean logits, in the gates that "
                        "check it (INT8's)")
    p.add_argument("--gate", type=gate_setting, action="append", default=[], metavar="PRECISION.CHECK=VALUE",
                   help="set, add or (with 'none') drop one check of one precision's gate, e.g. "
                        "int8.max-abs-diff=0.5 or fp16.min-agreement=none; repeatable")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per inference call")
    p.add_argument("--worst", type=non_negative_int, default=10, help="list this many "
                                                                      "most-different images in the JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from edgetl.bench.report import console as report_console
    from edgetl.data.folder import report_skipped
    from edgetl.io import atomic_write_json
    from edgetl.parity import compare_artifacts
    from edgetl.runtime.loader import artifact_kind

    if args.provider and not any(artifact_kind(p) == "onnx" for p in args.candidates):
        raise EdgetlError(f"--provider {args.provider} applies to .onnx candidates and none was given; drop it")
    report = compare_artifacts(args.reference, args.candidates, args.data, device=args.device, provider=args.provider,
                               limit=args.limit, overrides=_overrides(args), batch_size=args.batch_size,
                               n_worst=args.worst, progress=not args.no_progress, split=args.split)
    report_skipped([(Path(p), r) for p, r in report.skipped])
    console = report_console()
    console.print(parity_table(report))
    if report.note:
        console.print(f"[yellow]labels:[/yellow] {escape(report.note)}", highlight=False)
    for warning in (report.warning, report.trained_on):
        if warning:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    if report.class_map:
        mapping = ", ".join(f"{folder} → {cls}" for folder, cls in report.class_map.items())
        console.print(f"labels: folders read as ImageNet classes ({mapping})", highlight=False)
    for c in report.candidates:
        verdict = "[green]PASS[/green]" if c.passed else f"[red]FAIL[/red]: {'; '.join(c.fails)}"
        console.print(f"{escape(c.artifact)}: {verdict}", highlight=False)
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    return 0 if report.passed else 1


def _overrides(args: argparse.Namespace) -> dict[str, float | None]:
    """The global flags given (each changes its check where a gate has it), then the --gate settings."""
    from edgetl.parity import GATE_FIELDS

    given: dict[str, float | None] = {f: getattr(args, f) for f in GATE_FIELDS if getattr(args, f) is not None}
    return {**given, **dict(args.gate)}


def short_names(paths: list[str]) -> list[str]:
    """Each path by its file name, with as many parent folders as it takes to tell same-named files apart."""
    parts = [Path(p).parts for p in paths]
    names = []
    for mine in parts:
        depth = 1
        while depth < len(mine) and sum(other[-depth:] == mine[-depth:] for other in parts) > 1:
            depth += 1
        names.append(str(Path(*mine[-depth:])))
    return names


def parity_table(report: Any) -> Any:
    from rich.markup import escape
    from rich.table import Table

    ref = report.reference
    labelled = "labelled" if report.labelled else "unlabelled (no accuracy)"
    table = Table(title=escape(f"parity vs {Path(ref['artifact']).name} [{ref['backend']}/{ref['precision']}] — "
                               f"{report.images} {labelled} images"),
                  caption=escape(f"images: {report.data}") if report.data else None)
    for col in ("candidate", "backend", "precision", "max |Δ|", "mean |Δ|", "max |Δp|", "cosine", "centered cos",
                "top-1 agree", "top-5 overlap", "acc ref", "acc cand", "drop", "gate"):
        table.add_column(col, justify="left" if col in ("candidate", "backend", "gate") else "right")
    names = short_names([c.artifact for c in report.candidates])
    for c, name in zip(report.candidates, names, strict=True):
        s = c.stats
        acc = (f"{s.ref_accuracy:.2f}%", f"{s.cand_accuracy:.2f}%", f"{s.accuracy_drop:+.2f}") \
            if s.accuracy_drop is not None else ("-", "-", "-")
        backend = c.runner["backend"] + (f" ({c.runner['optimization']})" if c.runner.get("optimization") else "")
        centered = f"{s.centered_cosine:.4f}" if s.centered_cosine is not None else "-"
        table.add_row(escape(name), escape(backend), c.runner["precision"], f"{s.max_abs_diff:.2e}",
                      f"{s.mean_abs_diff:.2e}", f"{s.max_prob_diff:.1e}", f"{s.cosine:.6f}", centered,
                      f"{s.top1_agreement:.2%}",
                      f"{s.top5_overlap:.2%}" if s.top5_overlap is not None else "-", *acc,
                      "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]")
    return table
