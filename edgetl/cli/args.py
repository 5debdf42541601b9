"""Argument types shared by the subcommands: a bad number is a usage error that says what is expected."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def _number(kind: type, low: float, inclusive: bool, high: float | None = None) -> Callable[[str], float]:
    words = {int: "a whole number", float: "a number"}[kind]
    bound = f">= {low:g}" if inclusive else f"> {low:g}"
    if high is not None:
        bound = f"between {low:g} and {high:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {words} {bound}") from None
        if value < low or (not inclusive and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {bound}")
        return value

    parse.__name__ = words  # argparse names the type in its messages
    return parse


positive_int = _number(int, 1, inclusive=True)  # batch sizes, iterations, images
non_negative_int = _number(int, 0, inclusive=True)
positive_float = _number(float, 0, inclusive=False)  # seconds
non_negative_float = _number(float, 0, inclusive=True)  # tolerances, points
fraction = _number(float, 0, inclusive=True, high=1)  # agreement 0..1


def batch_sizes(text: str) -> list[int]:
    """``--batch 1,8,32`` → [1, 8, 32]; anything else is a usage error naming the expected form."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated batch sizes, e.g. 1,8,32") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be positive integers")
    return list(dict.fromkeys(values))  # a size given twice is measured once


PLOT_FORMATS = ("png", "svg", "pdf")


def plot_file(text: str) -> Path:
    """A figure to write: its suffix picks the format."""
    path = output_file(text)
    if path.suffix.lower().lstrip(".") not in PLOT_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r}: end the name in {', '.join('.' + f for f in PLOT_FORMATS)}")
    return path


def output_file(text: str) -> Path:
    """A file to write results to: refused before any work when it names a folder or cannot be written."""
    import os
    import tempfile

    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; pass a file path (one inside it, say)")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        if parent == path.parent:
            tempfile.TemporaryFile(dir=parent).close()  # the real test: can a file be created there?
        elif not (parent.is_dir() and os.access(parent, os.W_OK)):
            raise PermissionError(f"{parent} is not a writable folder")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: cannot write there ({exc.strerror or exc}); "
                                         "choose another path") from None
    return path


DATA_HELP = ("labelled images: DIR/<class>/…, a split of DIR/{train,val,test}/<class>/… (see --split) or a "
             "path,label[,split] CSV")


def add_data_arguments(p: argparse.ArgumentParser, more: str = "") -> None:
    """``--data`` and ``--split``, read as training reads data: the same folders, the same CSV, the same val."""
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP + (f"; {more}" if more else ""))
    p.add_argument("--split", choices=("val", "test", "train"), default="val",
                   help="which split of a DIR/{train,val,test} folder or a CSV's split column (default: val; "
                        "where edgetl split val off the run's own data, the same images)")
