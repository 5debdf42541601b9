"""Calibration / parity images → float32 NCHW batches through the model card's own preprocessing.

Uses ``eval_array`` — the same function training validation and the runtime Predictor use — so the
quantizer sees exactly the tensors the deployed model will see. Which files of a labelled folder are
used, and with which labels, is :func:`edgetl.data.labelled.find_labelled`'s job, shared with parity.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from edgetl.card import Preprocess
from edgetl.errors import EdgetlError
from edgetl.progress import show_progress

if TYPE_CHECKING:
    from edgetl.data.trained_on import TrainedOn

T = TypeVar("T")


@dataclass
class ImageSet:
    """Preprocessed images (N x C x H x W float32) with their files and, when known, labels."""

    array: np.ndarray
    paths: list[Path]
    labels: np.ndarray | None = None
    source: str = ""
    class_map: dict[str, str] | None = None  # folder name → model class, when folders were mapped by ImageNet name
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # files left out, with the reason
    warning: str | None = None  # some are the model's training images (edgetl.data.trained_on)

    def __len__(self) -> int:
        return len(self.paths)


def preprocess_files(paths: Sequence[Path], pre: Preprocess, labels: Sequence[int] | None = None,
                     describe: str = "Preprocessing", source: str = "") -> ImageSet:
    """Decode and preprocess ``paths`` with a progress bar; unreadable files and placeholder graphics are
    left out (``ImageSet.skipped``), as training leaves them out."""
    from rich.progress import track

    from edgetl.data.folder import drop_placeholders
    from edgetl.data.images import BadImage, decode_rgb, is_grey_graphic, map_images
    from edgetl.data.transforms import eval_array

    def one(path: Path) -> tuple[np.ndarray, bool] | BadImage:
        """(preprocessed array, a grey graphic?) or why ``path`` is unusable; runs on a decoding thread."""
        try:
            img = decode_rgb(path)
        except BadImage as exc:
            return exc
        return eval_array(img, pre), is_grey_graphic(img)

    arrays: dict[Path, np.ndarray] = {}
    label_of: dict[Path, int] = {}
    bad: list[tuple[Path, str]] = []
    graphics: set[Path] = set()
    files = [Path(p) for p in paths]
    done = track(map_images(one, files), total=len(files), description=describe, transient=True,
                 disable=not show_progress())
    for i, (p, result) in enumerate(zip(files, done, strict=True)):
        if isinstance(result, BadImage):
            bad.append((p, str(result)))
            continue
        arrays[p] = result[0]
        graphics.update([p] if result[1] else [])
        if labels is not None:
            label_of[p] = int(labels[i])
    kept, placeholders = drop_placeholders(list(arrays), graphics)
    if not kept:
        first = f" ({bad[0][0].name}: {bad[0][1]})" if bad else ""
        raise EdgetlError(f"{source or 'image folder'}: none of the {len(paths)} file(s) is a usable image"
                          f"{first}; point to a folder of photos")
    lab = np.asarray([label_of[p] for p in kept], np.int64) if labels is not None else None
    return ImageSet(np.stack([arrays[p] for p in kept]).astype(np.float32), kept, lab, source,
                    skipped=bad + placeholders)


def split_calibration(files: list[Path], size: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(calibration files, held-out files): a seeded shuffle, the first ``size`` calibrate, the rest are held out."""
    if size < 1:
        raise EdgetlError(f"--calib-size {size} must be at least 1")
    order = list(files)
    random.Random(seed).shuffle(order)
    return sorted(order[:size]), sorted(order[size:])


def seeded_indices(count: int, n: int, seed: int = 0) -> list[int]:
    """``n`` of ``range(count)`` drawn with ``seed``, in order (all when ``n >= count``).

    Never the first ``n`` of a sorted file list: that is the first few classes only (256 images of an
    ImageNet-like folder: 5 of 1000 classes), and parity would judge the model on them.
    """
    return list(range(count)) if n >= count else sorted(random.Random(seed).sample(range(count), n))


def seeded_sample(items: Sequence[T], n: int, seed: int = 0) -> list[T]:
    """``n`` of ``items``, drawn by :func:`seeded_indices`."""
    return [items[i] for i in seeded_indices(len(items), n, seed)]


def calibration_files(folder: str | Path) -> list[Path]:
    """Image files of an unlabelled calibration folder (recursive); an error naming the folder when empty."""
    from edgetl.data.folder import list_image_files

    return list_image_files(folder)


def labelled_images(folder: str | Path, classes: list[str], pre: Preprocess, limit: int | None = None,
                    seed: int = 0, trained: TrainedOn | None = None) -> ImageSet:
    """The val images of a labelled folder or CSV (as :func:`edgetl.data.labelled.find_labelled` reads them for
    the run ``trained`` describes) mapped onto ``classes`` and preprocessed.

    For the ImageNet head, folders named after ImageNet classes (``ants``, ``bees``) map by name.
    """
    from edgetl.data.folder import scan_eval_folder
    from edgetl.data.labelled import find_labelled

    found = find_labelled(Path(folder), classes, limit, seed, trained=trained, flag=None)  # export has no --split
    if found.labels is None:
        scan_eval_folder(found.source, classes)  # names the folder that is not a class
    if not found.paths or found.labels is None:
        raise EdgetlError(f"{folder}: no usable labelled images; expected {folder}/<class>/<image>")
    images = preprocess_files(found.paths, pre, found.labels, describe="Loading val images", source=found.source)
    images.class_map, images.skipped = found.class_map, found.skipped + images.skipped
    images.warning = found.warning
    return images
