"""Argument types shared by the subcommands: a bad number is a usage error that says what is expected."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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
    return values
