"""Describe an artifact: backend, precision, inputs/outputs, batch range, classes, preprocessing,
provenance (source, versions, GPU for engines) and op counts (Q/DQ pairs, float16 share).

Reads the files only: no inference session is created, so it works for an engine without TensorRT.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "describe an artifact (run dir, .onnx, .engine, .pt2)"


RESIZE_WORDS = {"center": "resize shorter side to {n} ({interp})",
                "squash": "resize to {n}x{n} ({interp}, aspect not kept)",
                "border": "resize longer side to {n} ({interp}), pad with the mean"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=Path, metavar="ARTIFACT",
                   help="a run directory, .safetensors, .onnx, .engine/.plan or .pt2 file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--all-ops", action="store_true", help="list every op type with its count")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "-" if value is None else str(value)


def _accuracy(metrics: dict[str, Any], backend: str) -> str:
    """Training's figures in words: val top-1 chose the epoch; test top-1, when the data had a test set, did not.
    They are the trained PyTorch model's: an exported file's own accuracy is parity's to measure."""
    from edgetl.evaluate import interval_text, wilson_interval

    text = f"val top-1 {metrics['val_top1']:.2f}% (chose epoch {metrics.get('best_epoch', '?')})"
    if metrics.get("test_top1") is not None and metrics.get("test_images"):
        n = int(metrics["test_images"])
        ci = interval_text(wilson_interval(round(metrics["test_top1"] * n / 100), n), "%")
        text += f"; test top-1 {metrics['test_top1']:.2f}%{ci} on {n} held-out images"
    return text if backend == "torch" else f"of the PyTorch model it came from: {text}"


def _trained_on(t: dict[str, Any]) -> str:
    """The data the run behind the artifact trained on, in one line: where, how split, how many, still so?"""
    counts = t.get("images") or {}
    listed = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    text = f"{t['data']}: {t['split']}; " + (f"{listed} files listed when it trained" if listed
                                               else "no split.json (a run from before edgetl recorded it)")
    if t.get("changed"):
        text += f"; changed since: {t['changed']}"
    if t.get("started_from"):
        text += f"; started from {', '.join(t['started_from'])}"
    return text


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from edgetl.bench.report import console as report_console
    from edgetl.card import REFIT_KEY
    from edgetl.info import describe_artifact

    info = describe_artifact(args.artifact)
    console = report_console()
    if args.json:
        console.print_json(json.dumps(info))
        return 0
    table = Table(title=escape(f"{info['artifact']}"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    lo, hi = info["batch_range"]
    rows = [("backend", info["backend"]), ("precision", info["precision"]), ("model", info["arch"]),
            ("inputs", ", ".join(f"{t['name']} {t['shape']} {t['dtype']}" for t in info["inputs"])),
            ("outputs", ", ".join(f"{t['name']} {t['shape']} {t['dtype']}" for t in info["outputs"])),
            ("batch range", f"{lo} .. {hi if hi is not None else 'any'}"),
            ("classes", f"{info['num_classes']}: {', '.join(info['classes'][:20])}"
                        f"{' …' if info['num_classes'] > 20 else ''}")]
    pre = info["preprocess"]
    resize = RESIZE_WORDS[pre["crop_mode"]].format(n=pre["resize"], interp=pre["interpolation"])
    crop = f"{pre['input_size'][1]}x{pre['input_size'][2]}"
    rows.append(("preprocessing", f"{resize}, center crop {crop}, "
                                  f"mean {pre['mean']}, std {pre['std']}"))
    t = info["temperature"]
    rows.append(("probabilities", f"softmax(logits / {t:.4g}), temperature {info['temperature_from']}" if t != 1
                 else "softmax(logits)"))
    if info["provenance"]["metrics"].get("val_top1") is not None:
        rows.append(("accuracy", _accuracy(info["provenance"]["metrics"], info["backend"])))
    if "trained_on" in info:
        rows.append(("trained on", _trained_on(info["trained_on"])))
    for key in ("opset", "producer", "parameters", "weights_file"):
        if key in info:
            rows.append((key, _fmt(info[key])))
    if "ops" in info:
        ops = info["ops"]
        rows.append(("ops", f"{ops['nodes']} nodes, {ops['qdq_pairs']} Q/DQ pairs, "
                            f"float16 share of weights {ops['float16_share']:.1%}"))
        top = sorted(ops["op_counts"].items(), key=lambda kv: -kv[1])
        shown = top if args.all_ops else top[:8]
        rows.append(("op counts", ", ".join(f"{k} {v}" for k, v in shown) + (" …" if len(shown) < len(top) else "")))
    for section in ("engine", "package", "export"):
        for key, value in info.get(section, {}).items():
            if key not in ("parity_passed", "sha256_differs"):  # the "parity" and "warning" rows say these
                rows.append((f"{section} {key}", _fmt(value)))
    for key, value in info.get("metadata", {}).items():
        rows.append((key, _fmt(value)))
    for key, value in info["provenance"].items():
        if value not in (None, {}, []) and key != REFIT_KEY:  # the "probabilities" row says it
            rows.append((key, _fmt(value)))
    for field, value in rows:
        table.add_row(field, escape(str(value)))
    console.print(table)
    return 0
