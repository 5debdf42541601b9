"""ImageNet's 1000 classes as a head's class names, and class folders named the ImageNet way.

A model with the 1000-class ImageNet head (``--weights efficientnet_lite0``) has classes ``imagenet_0`` …
``imagenet_999``. A labelled folder may name its class folders the ImageNet way instead: ``ants/`` and
``bees/`` map to classes 310 "ant, emmet, pismire" and 309 "bee" (a WordNet id or an index works too),
so real accuracy, not only agreement with FP32, is measured on photos such as hymenoptera/val.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
