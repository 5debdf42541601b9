"""What a run leaves behind for people: metrics.csv, curves.png, per-epoch lines and a summary table."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgetl.io import atomic_path, atomic_write_text

COLUMNS = ("epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "val_ece", "temperature",
           "val_ece_calibrated", "trainable_params", "seconds")


def write_metrics_csv(path: str | Path, history: list[dict[str, Any]]) -> None:
    """One row per epoch; top-5 only when the data has >= 5 classes."""
    cols = [c for c in COLUMNS if any(row.get(c) is not None for row in history)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({c: (f"{row[c]:.6g}" if isinstance(row.get(c), float) else row.get(c)) for c in cols})
    atomic_write_text(path, buf.getvalue())


def plot_curves(path: str | Path, history: list[dict[str, Any]]) -> None:
    """Loss and top-1 per epoch, train vs val."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((ax_loss, "loss", "loss"), (ax_acc, "top1", "top-1 accuracy (%)")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "o-", label="val")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.25" ticks on short runs
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    top5 = f" top5 {row['val_top5']:.1f}" if row.get("val_top5") is not None else ""
    return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} top1 {row['train_top1']:.1f}  |  "
            f"val loss {row['val_loss']:.4f} top1 {row['val_top1']:.1f}{top5}  |  lr {row['lr']:.2e}  "
            f"{row['seconds']:.1f}s")


def summary_table(history: list[dict[str, Any]], best_epoch: int | None, run_dir: Path, monitor: str) -> Table:
    table = Table(title=f"edgetl train — {run_dir}", title_justify="left")
    for col in ("epoch", "train loss", "train top-1", "val loss", "val top-1", "val top-5", "lr"):
        table.add_column(col, justify="right")
    for row in history:
        style = "bold green" if row["epoch"] == best_epoch else None
        top5 = f"{row['val_top5']:.1f}" if row.get("val_top5") is not None else "-"
        table.add_row(str(row["epoch"]), f"{row['train_loss']:.4f}", f"{row['train_top1']:.1f}",
                      f"{row['val_loss']:.4f}", f"{row['val_top1']:.1f}", top5, f"{row['lr']:.2e}", style=style)
    table.caption = f"best epoch {best_epoch} by {monitor} → {run_dir / 'best.safetensors'}"
    best = next((row for row in history if row["epoch"] == best_epoch), {})
    if "temperature" in best:
        table.caption += f"\n{calibration_line(best)}"
    return table


def calibration_line(row: dict[str, Any]) -> str:
    """The best epoch's temperature and what it did to the expected calibration error."""
    from edgetl.calibration import at_bound

    ece = f"val ECE {row['val_ece']:.3f}" if row.get("val_ece") is not None else "val ECE unknown"
    if row.get("temperature_kept"):
        return f"probabilities: temperature kept at 1 ({row['temperature_kept']}), {ece}; answers unchanged"
    t = row["temperature"]
    after = f" → {row['val_ece_calibrated']:.3f} (on held-out folds)" if "val_ece_calibrated" in row else ""
    line = f"probabilities: temperature {t:.3g}, {ece}{after}; answers unchanged"
    if at_bound(t) and t > 1:
        line += " (the fit stopped at its bound: the logits say little about the answer)"
    elif at_bound(t) and row.get("val_top1") == 100.0:
        line += " (the fit stopped at its bound: every validation image was right; a larger validation set says more)"
    elif at_bound(t):
        line += " (the fit stopped at its bound: the logits are still small, the model says much less than it knows; " \
                "train longer)"
    return line


def print_summary(console: Console, history: list[dict[str, Any]], best_epoch: int | None, run_dir: Path,
                  monitor: str, test: dict[str, Any] | None = None, data: str | None = None,
                  given: set[str] | None = None) -> None:
    if history:
        table = summary_table(history, best_epoch, run_dir, monitor)
        table.caption = f"{table.caption}\n{test_line(test or {}, data, given or set())}"
        console.print(table)


def test_line(test: dict[str, Any], data: str | None = None, given: set[str] | None = None) -> str:
    """The test set's figures, or why the best epoch's val figures read high and how to get true ones."""
    if not test:
        return ("validation chose this epoch, so its val figures read a little high; for figures nothing was chosen "
                f"on, keep photos out of training and validation: {_test_hint(data, given or set())}")
    from edgetl.evaluate import interval_text, wilson_interval

    n = test["test_images"]
    ci = interval_text(wilson_interval(round(test["test_top1"] * n / 100), n), "%")
    top5 = f", top-5 {test['test_top5']:.1f}%" if test.get("test_top5") is not None else ""
    ece = f", ECE {test['test_ece']:.3f} at T {test['test_temperature']:.3g}" if "test_ece" in test else ""
    return (f"test: top-1 {test['test_top1']:.1f}%{ci}{top5}{ece} on {n} images, scored after training; "
            "nothing was chosen on them")


def _test_hint(data: str | None, given: set[str]) -> str:
    """Where this run's data would hold a test set (``given``: the splits the data names itself)."""
    from edgetl.data.splits import split_folders

    root = Path(data or "DATA")
    after = "scored after training"
    if root.suffix.lower() == ".csv":
        return (f"add rows whose split is test to {root.name}, {after}" if given else
                f"give {root.name} a split column (path,label,split) with test rows, {after}")
    if data and root.name.lower() == "train" and root.parent.is_dir() and len(split_folders(root.parent)) > 1:
        return f"pass --data {root.parent} to use the val/ or test/ beside {root.name}/"
    if data and "train" not in given:
        return f"move the class folders into {root / 'train'}/ and add {root / 'test'}/<class>/, {after}"
    return f"{root / 'test'}/<class>/ is {after}"
