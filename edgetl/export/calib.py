"""Calibration / parity images → float32 NCHW batches through the model card's own preprocessing.

Uses ``eval_array`` — the same function training validation and the runtime Predictor use — so the
quantizer sees exactly the tensors the deployed model will see.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.card import Preprocess
from edgetl.errors import EdgetlError


@dataclass
class ImageSet:
    """Preprocessed images (N x C x H x W float32) with their files and, when known, labels."""

    array: np.ndarray
    paths: list[Path]
    labels: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)


def preprocess_files(paths: Sequence[Path], pre: Preprocess, labels: Sequence[int] | None = None,
                     describe: str = "Preprocessing", source: str = "") -> ImageSet:
    """Decode and preprocess ``paths`` with a progress bar; unreadable files are left out (and said so)."""
    from rich.progress import track

    from edgetl.data.images import BadImage, load_rgb
    from edgetl.data.transforms import eval_array

    arrays, kept, kept_labels, bad = [], [], [], []
    for i, p in enumerate(track(list(paths), description=describe, transient=True)):
        try:
            arrays.append(eval_array(load_rgb(p), pre))
        except BadImage as exc:
            bad.append(f"{p.name} ({exc})")
            continue
        kept.append(Path(p))
        if labels is not None:
            kept_labels.append(int(labels[i]))
    if not arrays:
        raise EdgetlError(f"{source or 'image folder'}: none of the {len(paths)} file(s) is a usable image"
                          f"{' (' + bad[0] + ')' if bad else ''}; point to a folder of photos")
    lab = np.asarray(kept_labels, np.int64) if labels is not None else None
    return ImageSet(np.stack(arrays).astype(np.float32), kept, lab, source)


def split_calibration(files: list[Path], size: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(calibration files, held-out files): a seeded shuffle, the first ``size`` calibrate, the rest are held out."""
    if size < 1:
        raise EdgetlError(f"--calib-size {size} must be at least 1")
    order = list(files)
    random.Random(seed).shuffle(order)
    return sorted(order[:size]), sorted(order[size:])


def calibration_files(folder: str | Path) -> list[Path]:
    """Image files of an unlabelled calibration folder (recursive); an error naming the folder when empty."""
    from edgetl.data.folder import list_image_files

    return list_image_files(folder)


def labelled_images(folder: str | Path, classes: list[str], pre: Preprocess, limit: int | None = None,
                    seed: int = 0) -> ImageSet:
    """A labelled folder (``DIR/<class>/…``) mapped onto ``classes`` and preprocessed."""
    from edgetl.data.folder import scan_eval_folder

    samples, _ = scan_eval_folder(folder, classes)
    if not samples:
        raise EdgetlError(f"{folder}: no usable labelled images; expected {folder}/<class>/<image>")
    if limit is not None and len(samples) > limit:
        samples = sorted(random.Random(seed).sample(samples, limit), key=lambda s: str(s.path))
    return preprocess_files([s.path for s in samples], pre, [s.label for s in samples],
                            describe="Loading val images", source=str(folder))
