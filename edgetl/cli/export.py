"""Export a trained run (or a timm model with --weights) to ONNX FP32/FP16/INT8 and TensorRT engines.

Every artifact is run with ONNX Runtime on real images and compared with the PyTorch model before the
command returns; a failed parity gate or accuracy budget exits with code 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.cli.args import non_negative_float, non_negative_int, positive_int
from edgetl.errors import EdgetlError, Interrupted
from edgetl.export.options import CALIB_METHODS, TARGETS
from edgetl.export.tensorrt import HARDWARE_LEVELS

if TYPE_CHECKING:
    from edgetl.export.pipeline import ExportOptions

HELP = "export ONNX (FP32/FP16/INT8 Q/DQ) and TensorRT engines, with parity checks"


def _batch(text: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch {text!r}: expected MIN:OPT:MAX, e.g. 1:8:32") from None
    return lo, opt, hi


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="RUN_DIR",
                        help="run directory (model.json + best.safetensors), a .safetensors file, or a "
                             "timm model name with --weights")
    parser.add_argument("--weights", help="for a timm model name: efficientnet_lite0, efficientnet_lite1 or a file")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: RUN_DIR/export; export/ beside a .safetensors file; "
                             "export/NAME for a timm name)")
    parser.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx (float32 I/O)")
    parser.add_argument("--int8", action="store_true", help="also write model.int8.onnx (Q/DQ, needs --calib-data)")
    parser.add_argument("--calib-data", type=Path, help="folder of calibration images (recursive)")
    parser.add_argument("--calib-size", type=positive_int, default=None,
                        help="calibration images to use (default: the model's recipe in models/, else 512)")
    parser.add_argument("--calib-method", default=None, choices=CALIB_METHODS,
                        help="activation ranges (default: the model's recipe in models/, else minmax)")
    parser.add_argument("--int8-target", default=None, choices=TARGETS,
                        help="tensorrt (default): symmetric S8 Q/DQ; cpu: U8 activations for ONNX Runtime on x86")
    parser.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                        help="cpu target: 7-bit weights, avoid int16 saturation on x86 without VNNI "
                             "(default: on for --int8-target cpu)")
    parser.add_argument("--val-data", type=Path, help="labelled images for parity and accuracy, read as training reads "
                        "them (DIR/<class>/…, DIR/val, a CSV's val rows; the run's own data: its held-out val)")
    parser.add_argument("--parity-data", type=Path,
                        help="unlabelled images for parity (default: --val-data, else calibration images held out)")
    parser.add_argument("--parity-size", type=positive_int, default=None, help="images used for parity (default 256)")
    parser.add_argument("--max-accuracy-drop", type=non_negative_float, default=None, metavar="PTS",
                        help="INT8 budget in top-1 points; sensitive layers stay in float until it holds")
    parser.add_argument("--max-excluded", type=non_negative_int, default=None,
                        help="most layers --max-accuracy-drop may keep in float (default 8)")
    parser.add_argument("--engine", action="store_true", help="build TensorRT engines (where tensorrt imports)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--batch", type=_batch, default=None, metavar="MIN:OPT:MAX",
                       help="dynamic batch range / TensorRT optimization profile (default 1:8:32)")
    group.add_argument("--static-batch", type=positive_int, default=None, metavar="N", help="fixed batch size")
    parser.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (default 18; torch writes 18 "
                        "and converts, which works upwards)")
    parser.add_argument("--workspace", type=positive_int, default=None, metavar="MB",
                        help="TensorRT workspace limit (default: TensorRT's, the GPU's memory)")
    parser.add_argument("--timing-cache", default=None,
                        help="TensorRT timing cache file, reused across builds (default: OUT/timing.cache)")
    parser.add_argument("--version-compatible", action="store_true", help="TensorRT version-compatible engine")
    parser.add_argument("--hardware-compatibility", default="none", choices=HARDWARE_LEVELS,
                        help="TensorRT engines portable across discrete GPU generations (slower; not on Jetson; "
                             "same-cc needs TensorRT 10.9+)")
    parser.add_argument("--dla-core", type=non_negative_int, default=None, help="Jetson DLA core (GPU fallback on)")
    parser.add_argument("--profiles", type=positive_int, default=1, metavar="N",
                        help="identical batch profiles, one per execution context run at once (throughput mode)")
    parser.add_argument("--trt-fp16-flag", action="store_true",
                        help="TensorRT 10.x only: build the FP16 engine from the FP32 ONNX with the FP16 builder flag")
    parser.add_argument("--aoti", action="store_true", help="also write an AOTInductor model.pt2")
    parser.add_argument("--fp32-onnx", type=Path, default=None, metavar="FILE",
                        help="start from an earlier export's model.onnx of this same model instead of exporting "
                             "again (the slow step), e.g. for another --int8-target; FP32 parity still checks it")
    parser.add_argument("--provider", action="append", default=None,
                        help="ONNX Runtime provider for parity (cpu, cuda); default CUDA when present")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a table")


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_summary(manifest: Any) -> None:
    """The parity table people read; manifest.json holds the same figures for machines."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgetl export — parity on {manifest.parity_data.get('n')} image(s): "
                        f"{manifest.parity_data.get('source')}")
    top5 = any((a.parity or {}).get("top5_overlap") is not None for a in manifest.artifacts)  # past 5 classes
    for col in ("artifact", "precision", "MB", "max |Δ|", "mean |Δ|", "max |Δp|", "cosine", "top-1 agree",
                *(["top-5 overlap"] if top5 else []), "acc (ref→art)", "drop", "gate"):
        table.add_column(col)
    for a in manifest.artifacts:
        p = a.parity or {}
        acc = f"{p['ref_accuracy']:.2f}→{p['cand_accuracy']:.2f}" if p.get("ref_accuracy") is not None else "-"
        gate = "-" if not p else ("[green]pass[/green]" if p["passed"] else "[red]FAIL[/red]")
        overlap = [_fmt(p.get("top5_overlap"), ".2%")] if top5 else []
        table.add_row(a.file, a.precision, f"{a.bytes / 2**20:.1f}", _fmt(p.get("max_abs_diff"), ".2e"),
                      _fmt(p.get("mean_abs_diff"), ".2e"), _fmt(p.get("max_prob_diff"), ".1e"),
                      _fmt(p.get("cosine"), ".6f"),
                      _fmt(p.get("top1_agreement"), ".2%"), *overlap, acc, _fmt(p.get("drop"), ".2f"), gate)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 150))  # logs and CI: do not squeeze the table to 80 columns
    console.print(table)
    build = manifest.engine_build
    if build.get("status") != "built" and build.get("status") != "not requested":
        console.print(f"[yellow]TensorRT engine {build['status']}.[/yellow] On the target run:")
        console.print(f"  {build['edgetl']}", highlight=False, soft_wrap=True)
        console.print("or, with TensorRT's CLI, in this folder:")
        for line in build["trtexec"].values():
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    for precision, why in build.get("skipped", {}).items() if build.get("status") != "not requested" else ():
        console.print(f"[yellow]no {precision} engine:[/yellow] {why}", highlight=False)  # only when one was asked
    for failure in manifest.failures:
        console.print(f"[red]failed:[/red] {failure}", highlight=False)


INT8_ONLY = ("calib_method", "int8_target", "reduce_range", "max_accuracy_drop", "max_excluded")


def check_flags(args: argparse.Namespace) -> None:
    """A flag that would change nothing is a mistake worth saying, not something to accept silently."""
    given = [name for name in INT8_ONLY if getattr(args, name) is not None]
    if given and not args.int8:
        raise EdgetlError(f"--{given[0].replace('_', '-')} shapes the INT8 model; add "
                          "--int8 (and --calib-data) or drop it")
    if args.max_excluded is not None and args.max_accuracy_drop is None:
        raise EdgetlError("--max-excluded limits --max-accuracy-drop's search; add --max-accuracy-drop PTS or drop it")
    if args.trt_fp16_flag and not args.fp16:
        raise EdgetlError("--trt-fp16-flag builds the FP16 engine; add --fp16 or drop it")


def default_out(source: str) -> Path:
    """RUN_DIR/export for a run, the checkpoint's folder/export for a .safetensors, export/NAME for a timm name."""
    path = Path(source)
    if path.is_dir():
        return path / "export"
    if path.suffix == ".safetensors":
        return path.parent / "export"
    return Path("export") / path.name


def run(args: argparse.Namespace) -> int:
    import logging

    from edgetl.export.pipeline import export_artifacts
    from edgetl.io import json_text

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    check_flags(args)
    out = args.out or default_out(args.source)
    options = _options(args)
    try:
        manifest = export_artifacts(args.source, out, options)
    except KeyboardInterrupt:
        kept = ("the export that was there is untouched" if (out / "manifest.json").is_file()
                else "it holds no manifest.json, so nothing in it is verified")
        print(f"interrupted: {out}: {kept}; run the same `edgetl export` again to finish", file=sys.stderr)
        raise Interrupted from None
    if args.json:
        print(json_text(manifest.to_dict()))
    else:
        print_summary(manifest)
        print(f"wrote {len(manifest.artifacts)} artifact(s) and manifest.json to {out}")
        if "reference_run" in manifest.source:
            print(f"PyTorch reference for edgetl bench / parity: {out / manifest.source['reference_run']}")
    return 0 if manifest.passed else 1


def _options(args: argparse.Namespace) -> ExportOptions:
    """The flags as ExportOptions; a flag not given (None) leaves the library's default in place."""
    from edgetl.export.pipeline import ExportOptions
    from edgetl.export.tensorrt import BuildSettings

    trt = BuildSettings(workspace_mb=args.workspace, timing_cache=args.timing_cache,
                        version_compatible=args.version_compatible, hardware_compatibility=args.hardware_compatibility,
                        dla_core=args.dla_core, legacy_fp16=args.trt_fp16_flag, profiles=args.profiles)
    given = {"weights": args.weights, "fp16": args.fp16, "int8": args.int8, "calib_data": args.calib_data,
             "calib_size": args.calib_size, "calib_method": args.calib_method, "int8_target": args.int8_target,
             "reduce_range": args.reduce_range, "val_data": args.val_data, "parity_data": args.parity_data,
             "parity_size": args.parity_size, "max_accuracy_drop": args.max_accuracy_drop,
             "max_excluded": args.max_excluded, "engine": args.engine, "batch": args.batch,
             "static_batch": args.static_batch, "opset": args.opset, "trt": trt, "aoti": args.aoti,
             "fp32_onnx": args.fp32_onnx, "providers": args.provider, "quiet": args.json}
    return ExportOptions(**{k: v for k, v in given.items() if v is not None})
