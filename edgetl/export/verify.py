"""Parity at export: the images each artifact is judged on, the PyTorch reference logits, and the verdict.

Every artifact is run by the runtime's own runner on the same images and held to ``edgetl parity``'s gate for
its precision (``gate_for``/``check_gate``), so export and ``edgetl parity`` never disagree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.card import ModelCard
from edgetl.errors import warn
from edgetl.export.calib import (
    ImageSet,
    calibration_files,
    labelled_images,
    preprocess_files,
    seeded_indices,
    seeded_sample,
    split_calibration,
)
from edgetl.export.options import DEFAULT_CALIB_SIZE, ExportOptions
from edgetl.parity import Gate, ParityStats, check_gate, compare_logits, gate_for, gate_record
from edgetl.progress import show_progress

if TYPE_CHECKING:
    from edgetl.data.trained_on import TrainedOn
    from edgetl.runtime.base import Runner

SYNTHETIC_IMAGES = 8  # N(0,1) inputs parity falls back to when no images are given
INFER_CHUNK = 16


@contextlib.contextmanager
def progress_bar(describe: str, total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, disable=not show_progress(not quiet)) as bar:
        task = bar.add_task(describe, total=total)
        yield lambda n: bar.advance(task, n)


def infer_all(runner: Runner, images: np.ndarray, describe: str, quiet: bool = False) -> np.ndarray:
    """Logits for ``images`` in chunks, with a progress bar."""
    outs = []
    with progress_bar(describe, len(images), quiet) as advance:
        for i in range(0, len(images), INFER_CHUNK):
            outs.append(runner.infer(images[i:i + INFER_CHUNK]))
            advance(len(outs[-1]))
    return np.concatenate(outs) if outs else np.zeros((0, runner.card.num_classes), np.float32)


def ort_providers(requested: list[str] | None) -> list[str] | None:
    """CUDA where present, else CPU (never the TensorRT EP: it would time engine builds, not parity)."""
    if requested is not None:
        return requested
    import onnxruntime as ort

    return ["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else ["cpu"]


@dataclass
class ParitySet:
    images: ImageSet
    reference: np.ndarray
    info: dict[str, Any]


def export_images(card: ModelCard, options: ExportOptions,
                  trained: TrainedOn | None = None) -> tuple[ImageSet | None, ImageSet, dict[str, Any]]:
    """(calibration images, parity images, description of the parity data); files left out are listed.

    ``trained`` (the source checkpoint's run) gives ``--val-data`` the val images training split off its data.
    """
    from edgetl.data.folder import report_skipped

    calib, parity, info = _load_images(card, options, trained)
    skipped = dict.fromkeys([*(calib.skipped if calib else []), *parity.skipped])
    if skipped and not options.quiet:
        report_skipped(list(skipped))
    if parity.warning and not options.quiet:
        warn(f"--val-data: {parity.warning}")
    if parity.skipped:
        info["skipped"] = [f"{p}: {reason}" for p, reason in parity.skipped]
    return calib, parity, info


def _load_images(card: ModelCard, options: ExportOptions,
                 trained: TrainedOn | None = None) -> tuple[ImageSet | None, ImageSet, dict[str, Any]]:
    pre = card.preprocess
    calib: ImageSet | None = None
    held: list[Path] = []
    if options.calib_data is not None:
        files = calibration_files(options.calib_data)
        chosen, held = split_calibration(files, options.calib_size or DEFAULT_CALIB_SIZE, options.seed)
        calib = preprocess_files(chosen, pre, describe="Loading calibration images", source=str(options.calib_data))
    if options.val_data is not None:
        val = labelled_images(options.val_data, card.classes, pre, options.parity_size, options.seed, trained)
        info = {"source": val.source, "n": len(val), "labelled": True,
                "same_as_calibration": bool(calib and set(val.paths) & set(calib.paths)),
                **({"trained_on": val.warning} if val.warning else {})}
        if val.class_map:
            info["class_map"] = val.class_map
        return calib, val, info
    if options.parity_data is not None:
        files = seeded_sample(calibration_files(options.parity_data), options.parity_size, options.seed)
        parity = preprocess_files(files, pre, describe="Loading parity images", source=str(options.parity_data))
        return calib, parity, {"source": str(options.parity_data), "n": len(parity), "labelled": False,
                               "same_as_calibration": bool(calib and set(parity.paths) & set(calib.paths))}
    if held:
        parity = preprocess_files(seeded_sample(held, options.parity_size, options.seed), pre,
                                  describe="Loading held-out images", source=str(options.calib_data))
        return calib, parity, {"source": f"{options.calib_data} (held out of calibration)", "n": len(parity),
                               "labelled": False, "same_as_calibration": False}
    if calib is not None:
        keep = seeded_indices(len(calib.paths), options.parity_size, options.seed)
        sub = ImageSet(calib.array[keep], [calib.paths[i] for i in keep], None, calib.source)
        return calib, sub, {"source": f"{options.calib_data} (the calibration images)", "n": len(sub),
                            "labelled": False, "same_as_calibration": True}
    rng = np.random.default_rng(options.seed)
    synthetic = rng.standard_normal((SYNTHETIC_IMAGES, *card.preprocess.input_size)).astype(np.float32)
    return None, ImageSet(synthetic, [Path(f"synthetic_{i}") for i in range(SYNTHETIC_IMAGES)], None, "synthetic"), {
        "source": "synthetic N(0,1) inputs (pass --val-data or --calib-data for real images)",
        "n": SYNTHETIC_IMAGES, "labelled": False, "same_as_calibration": False}


def int8_drop(stats: ParityStats) -> tuple[float, str]:
    """Top-1 drop in points: accuracy against labels, else disagreement with FP32 (an upper bound)."""
    if stats.accuracy_drop is not None:
        return stats.accuracy_drop, "top-1 accuracy drop vs FP32 (labels)"
    return (1.0 - stats.top1_agreement) * 100.0, "top-1 disagreement with FP32 (no labels)"


def int8_fix_hint(budget: float) -> str:
    """What to do about a failed INT8 gate (the budget search is opt-in: it costs a quantization per layer tried)."""
    return (f"--max-accuracy-drop {budget:g} keeps the layers that add the most error in float until the drop "
            "holds; more labelled --val-data images judge the drop more surely")


def _gate(precision: str, options: ExportOptions) -> Gate:
    """``edgetl parity``'s default gate, with ``--max-accuracy-drop`` as INT8's budget."""
    budget = options.max_accuracy_drop
    return gate_for(precision, {"int8.max_accuracy_drop": budget} if budget is not None else None)


def parity_record(runner: Runner, parity: ParitySet, precision: str, options: ExportOptions,
                  describe: str) -> dict[str, Any]:
    """Run ``runner`` on the parity images and judge it against the PyTorch reference."""
    logits = infer_all(runner, parity.images.array, describe, options.quiet)
    stats = compare_logits(parity.reference, logits, parity.images.labels, temperature=runner.card.temperature)
    gate = _gate(precision, options)
    failures = check_gate(stats, gate)
    gate_failed = bool(failures)
    evaluated_with = {"backend": runner.info.backend, "device": runner.info.device,
                      **{k: runner.info.details.get(k) for k in ("provider", "optimization")}}
    record: dict[str, Any] = {**stats.to_dict(), "gate": gate_record(gate, stats), "evaluated_with": evaluated_with}
    if not np.all(np.isfinite(logits)):
        failures.append("outputs contain inf/NaN")
    if precision == "int8" and gate.max_accuracy_drop is not None:
        drop, basis = int8_drop(stats)
        record["drop"], record["drop_basis"] = drop, basis
        if gate_failed and options.max_accuracy_drop is None:  # the drop or the centered cosine: one fix for both
            failures.append(int8_fix_hint(gate.max_accuracy_drop))
    record["worst_files"] = [str(parity.images.paths[i]) for i in stats.worst]  # same order as "worst"
    record["passed"], record["failures"] = not failures, failures
    return record


def ort_parity(path: Path, parity: ParitySet, precision: str, options: ExportOptions,
                optimization: str = "all") -> dict[str, Any]:
    from edgetl.runtime.onnxruntime import OrtRunner

    with OrtRunner(path, providers=ort_providers(options.providers), optimization=optimization) as runner:
        return parity_record(runner, parity, precision, options, f"Parity {path.name}")
