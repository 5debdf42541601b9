"""Which files of an image folder to judge a model on, and their labels.

Shared by export (``--val-data``) and parity so both read a folder the same way: ``DIR/<class>/…`` (or
``DIR/val/<class>/…``) named by the model's classes or, for the ImageNet head, by ImageNet class names.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from edgetl.data.imagenet import IMAGENET_CLASSES, imagenet_index, imagenet_samples
from edgetl.errors import EdgetlError


@dataclass
class LabelledFiles:
    """The image files to judge on, their labels when the folder has them, and what was left out."""

    paths: list[Path]
    labels: list[int] | None
    skipped: list[tuple[Path, str]]
    class_map: dict[str, str] | None = None  # folder name → model class, for folders named by ImageNet class
    note: str | None = None  # why a folder with class folders gave no labels


def find_labelled(data: Path, classes: list[str], limit: int | None = None, seed: int = 0) -> LabelledFiles:
    """Labelled samples when ``data`` is laid out by the model's classes (or, for the ImageNet head, by
    ImageNet class names such as ``ants``), else every image unlabelled; ``limit`` draws a seeded sample.

    Folders of which only some are the model's classes are an error: a labelling mistake, not unlabelled data.
    """
    from edgetl.data.folder import check_images, list_image_files, scan_eval_folder

    if not data.is_dir():
        raise EdgetlError(f"{data}: not a folder; pass a folder of images (DIR/<class>/… for accuracy)")
    root = data / "val" if (data / "val").is_dir() else data
    subdirs = {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    mapped = imagenet_samples(root) if subdirs and classes == IMAGENET_CLASSES else None
    class_map = None
    if subdirs and subdirs <= set(classes):
        samples, skipped = scan_eval_folder(data, classes)
        pairs, labelled = [(s.path, s.label) for s in samples], True
    elif mapped is not None:
        pairs, skipped, class_map, labelled = mapped.pairs, mapped.skipped, mapped.class_map, True
    else:
        _check_not_half_labelled(root, subdirs, classes)
        good, skipped = check_images(list_image_files(data))
        pairs, labelled = [(p, -1) for p in good], False
    if limit is not None and limit < len(pairs):
        if limit < 1:
            raise EdgetlError(f"--limit {limit} must be at least 1")
        pairs = sorted(random.Random(seed).sample(pairs, limit), key=lambda p: str(p[0]))
    note = None
    if subdirs and not labelled:
        test = f"; for its test set, pass {root / 'test'}" if (root / "test").is_dir() else ""
        note = (f"none of {root}'s folders ({_preview(sorted(subdirs))}) is a class of the model "
                f"({_preview(classes)}): no labels, so no accuracy{test}")
    return LabelledFiles([p for p, _ in pairs], [lab for _, lab in pairs] if labelled else None, skipped, class_map,
                        note)


def _preview(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f", … ({len(names)} in all)" if len(names) > n else "")


def _check_not_half_labelled(root: Path, subdirs: set[str], classes: list[str]) -> None:
    """Some folders named by the model's classes and some not is a labelling mistake, not unlabelled data."""
    imagenet = classes == IMAGENET_CLASSES
    known = {d for d in subdirs if d in classes or (imagenet and imagenet_index(d) is not None)}
    if known:
        extra = sorted(subdirs - known)
        raise EdgetlError(f"{root}: folder(s) {_preview(extra)} are not classes of the model "
                          f"({'ImageNet classes' if imagenet else _preview(classes)}); "
                          "rename or move them so every folder is one of the model's classes")
