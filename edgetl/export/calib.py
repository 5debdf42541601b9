"""Calibration / parity images → float32 NCHW batches through the model card's own preprocessing.

Uses ``eval_array`` — the same function training validation and the runtime Predictor use — so the
quantizer sees exactly the tensors the deployed model will see.

A labelled folder for a model with the 1000-class ImageNet head (``--weights efficientnet_lite0``, classes
``imagenet_0`` … ``imagenet_999``) may name its class folders the ImageNet way instead: ``ants/`` and
``bees/`` map to classes 310 "ant, emmet, pismire" and 309 "bee" (a WordNet id or an index works too),
so real accuracy — not only agreement with FP32 — is measured on photos such as hymenoptera/val.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.card import Preprocess
from edgetl.errors import EdgetlError
from edgetl.progress import show_progress


@dataclass
class ImageSet:
    """Preprocessed images (N x C x H x W float32) with their files and, when known, labels."""

    array: np.ndarray
    paths: list[Path]
    labels: np.ndarray | None = None
    source: str = ""
    class_map: dict[str, str] | None = None  # folder name → model class, when folders were mapped by ImageNet name
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # files left out, with the reason

    def __len__(self) -> int:
        return len(self.paths)


def preprocess_files(paths: Sequence[Path], pre: Preprocess, labels: Sequence[int] | None = None,
                     describe: str = "Preprocessing", source: str = "") -> ImageSet:
    """Decode and preprocess ``paths`` with a progress bar; unreadable files and placeholder graphics are
    left out (``ImageSet.skipped``), as training leaves them out."""
    from rich.progress import track

    from edgetl.data.folder import drop_placeholders
    from edgetl.data.images import BadImage, is_grey_graphic, load_rgb
    from edgetl.data.transforms import eval_array

    arrays: dict[Path, np.ndarray] = {}
    label_of: dict[Path, int] = {}
    bad: list[tuple[Path, str]] = []
    graphics: set[Path] = set()
    for i, p in enumerate(track(list(paths), description=describe, transient=True,
                                       disable=not show_progress())):
        try:
            img = load_rgb(p)
        except BadImage as exc:
            bad.append((Path(p), str(exc)))
            continue
        arrays[Path(p)] = eval_array(img, pre)
        graphics.update([Path(p)] if is_grey_graphic(img) else [])
        if labels is not None:
            label_of[Path(p)] = int(labels[i])
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


def calibration_files(folder: str | Path) -> list[Path]:
    """Image files of an unlabelled calibration folder (recursive); an error naming the folder when empty."""
    from edgetl.data.folder import list_image_files

    return list_image_files(folder)


IMAGENET_CLASSES = [f"imagenet_{i}" for i in range(1000)]


def imagenet_description(class_name: str) -> str | None:
    """What an ImageNet head's class ``imagenet_310`` is ("ant, emmet, pismire"); None for other names."""
    number = class_name.removeprefix("imagenet_")
    if class_name == number or not number.isdigit() or int(number) >= 1000:
        return None
    from timm.data import ImageNetInfo

    return str(ImageNetInfo().index_to_description(int(number)))


def imagenet_index(folder_name: str) -> int | None:
    """ImageNet-1k class of a folder named by index (310, imagenet_310), WordNet id or class name ("ants")."""
    from timm.data import ImageNetInfo

    name = folder_name.strip().lower()
    number = name.removeprefix("imagenet_")
    if number.isdigit():
        return int(number) if int(number) < 1000 else None
    info = ImageNetInfo()
    words = name.replace("_", " ").replace("-", " ")
    forms = [words] + [words[:-len(end)] for end in ("es", "s") if words.endswith(end)]
    for form in forms:
        hits = {i for i in range(1000) if info.index_to_label_name(i) == name
                or form in [w.lower() for w in info.index_to_description(i).split(", ")]}
        if len(hits) == 1:
            return hits.pop()
    return None


@dataclass
class ImagenetFolders:
    """``root/<name>/…`` read with ImageNet labels: folders named after ImageNet classes (``ants``, ``bees``)."""

    pairs: list[tuple[Path, int]]  # (file, ImageNet class index)
    class_map: dict[str, str]  # folder name → model class
    skipped: list[tuple[Path, str]]  # files that do not decode, placeholders


def imagenet_samples(root: Path) -> ImagenetFolders | None:
    """Labelled samples of ``root`` for the 1000-class head when every folder names one ImageNet class."""
    from edgetl.data.folder import check_images, list_image_files

    if not root.is_dir():
        return None
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    index = {d.name: imagenet_index(d.name) for d in dirs}
    if not dirs or any(i is None for i in index.values()):
        return None
    files = [(p, int(index[d.name] or 0)) for d in dirs for p in list_image_files(d)]
    good, skipped = check_images([f for f, _ in files])
    keep = set(good)
    return ImagenetFolders([(f, label) for f, label in files if f in keep],
                           {d: f"imagenet_{i}" for d, i in index.items()}, skipped)


def labelled_images(folder: str | Path, classes: list[str], pre: Preprocess, limit: int | None = None,
                    seed: int = 0) -> ImageSet:
    """A labelled folder (``DIR/<class>/…``) mapped onto ``classes`` and preprocessed.

    For the ImageNet head, folders named after ImageNet classes (``ants``, ``bees``) map by name.
    """
    from edgetl.data.folder import scan_eval_folder

    root = Path(folder)
    root = root / "val" if (root / "val").is_dir() else root
    mapped = None
    if classes == IMAGENET_CLASSES and root.is_dir() and not any((root / c).is_dir() for c in classes):
        mapped = imagenet_samples(root)
    if mapped is not None:
        pairs, class_map, skipped = mapped.pairs, mapped.class_map, mapped.skipped
    else:
        samples, skipped = scan_eval_folder(folder, classes)
        pairs, class_map = [(s.path, s.label) for s in samples], None
    if not pairs:
        raise EdgetlError(f"{folder}: no usable labelled images; expected {folder}/<class>/<image>")
    if limit is not None and len(pairs) > limit:
        pairs = sorted(random.Random(seed).sample(pairs, limit), key=lambda s: str(s[0]))
    images = preprocess_files([p for p, _ in pairs], pre, [label for _, label in pairs],
                              describe="Loading val images", source=str(folder))
    images.class_map, images.skipped = class_map, skipped + images.skipped
    return images
