"""Which files of an image folder or CSV to judge a model on, and their labels.

Shared by eval, parity, calibrate and export's ``--val-data`` so all read data as training does: a folder of
``DIR/<class>/…``, or one split of ``DIR/{train,val,test}/<class>/…`` (val by default; ``valid/`` counts), or the
rows of a ``path,label[,split]`` CSV, named by the model's classes or, for the ImageNet head, by ImageNet class
names. Where edgetl split val off the run's own data, the same seeded split gives the same val images.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.data.imagenet import IMAGENET_CLASSES, imagenet_index, imagenet_samples
from edgetl.errors import EdgetlError

if TYPE_CHECKING:
    from edgetl.data.trained_on import TrainedOn

SPLITS = ("train", "val", "test")


@dataclass
class LabelledFiles:
    """The image files to judge on, their labels when the data has them, and what was left out."""

    paths: list[Path]
    labels: list[int] | None
    skipped: list[tuple[Path, str]]
    class_map: dict[str, str] | None = None  # folder name → model class, for folders named by ImageNet class
    note: str | None = None  # why a folder with class folders gave no labels
    source: str = ""  # what was read, absolute: the folder, the CSV's rows, or the val split edgetl made
    warning: str | None = None  # some of the images are the model's training images


def find_labelled(data: Path, classes: list[str], limit: int | None = None, seed: int = 0, split: str = "val",
                  trained: TrainedOn | None = None, flag: str | None = "--split") -> LabelledFiles:
    """The ``split`` images of ``data`` with their labels (see the module's docstring), else, for a folder
    whose folders are not classes, every image unlabelled; ``limit`` draws a seeded sample.

    ``trained`` (the run behind the model) finds the val images edgetl split off that run's data, and says
    when any image scored is one it trained on. ``flag`` is the command's option that picks the split, for
    the errors' fixes (None: it has none). Folders of which only some are the model's classes are an error: a
    labelling mistake, not unlabelled data.
    """
    if split not in SPLITS:
        raise EdgetlError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    trained = trained.for_data(data) if trained is not None else None
    if not data.exists():
        raise EdgetlError(f"{data}: not found; pass a folder of images (DIR/<class>/… for accuracy) or a "
                          "path,label CSV")
    if split != "test" and trained is not None and trained.made_split_of(data):
        found = _made_split(data, classes, trained, split)
    elif data.is_file() and data.suffix.lower() == ".csv":
        found = _csv_rows(data, classes, split, flag)
    elif data.is_dir():
        found = _folder(_split_root(data, classes, split, flag), classes)
    else:
        raise EdgetlError(f"{data}: not a folder or .csv; pass a folder of images (DIR/<class>/… for accuracy) "
                          "or a path,label CSV")
    if limit is not None and limit < len(found.paths):
        if limit < 1:
            raise EdgetlError(f"--limit {limit} must be at least 1")
        keep = sorted(random.Random(seed).sample(range(len(found.paths)), limit), key=lambda i: str(found.paths[i]))
        found.paths = [found.paths[i] for i in keep]
        found.labels = [found.labels[i] for i in keep] if found.labels is not None else None
    if trained is not None:
        found.warning = trained.overlap(found.paths)
    return found


def _split_root(data: Path, classes: list[str], split: str, flag: str | None) -> Path:
    """The folder holding ``split``'s class folders: ``data`` itself when its folders are classes (or hold no
    class folders: unlabelled images), else its ``train/``, ``val/`` (``valid/``, ``validation/``) or
    ``test/``, found as training finds them."""
    from edgetl.data.folder import class_dirs
    from edgetl.data.splits import split_folders

    names = {d.name for d in class_dirs(data)}
    folders = {} if names and names <= set(classes) else split_folders(data)
    if not any(class_dirs(f) for f in folders.values()):
        if split != "val" and split in folders:
            raise EdgetlError(f"{folders[split]}: no class folders, so no labels; pass --data {folders[split]} to "
                              f"compare on its images unlabelled, or sort them into {folders[split]}/<class>/")
        folders = {}  # train/ and test/ of loose images are not splits of class folders
    if split in folders:
        return folders[split]
    if folders:
        have = ", ".join(f"{d.name}/" for d in sorted(folders.values()))
        other = next(k for k in ("val", "test", "train") if k in folders)
        fix = "" if flag is None else f"drop {flag} to use val/, or " if other == "val" else \
            f"pass {flag} {other} to use {folders[other].name}/, or "
        raise EdgetlError(f"{data}: no {split}/ folder (it has {have}); {fix}pass the folder of {split} images")
    if split != "val":
        raise EdgetlError(f"{data}: no {split}/ folder (its folders are classes, or hold images); drop {flag}, or "
                          f"pass a folder that has {split}/<class>/")
    return data


def _folder(root: Path, classes: list[str]) -> LabelledFiles:
    """``root/<class>/…`` labelled by the model's classes (or ImageNet names), else every image unlabelled."""
    from edgetl.data.folder import check_images, list_image_files, scan_eval_folder

    subdirs = {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    mapped = imagenet_samples(root) if subdirs and classes == IMAGENET_CLASSES else None
    if subdirs and subdirs <= set(classes):
        samples, skipped = scan_eval_folder(root, classes)
        return LabelledFiles([s.path for s in samples], [s.label for s in samples], skipped, source=str(root.resolve()))
    if mapped is not None:
        return LabelledFiles([p for p, _ in mapped.pairs], [lab for _, lab in mapped.pairs], mapped.skipped,
                             mapped.class_map, source=str(root.resolve()))
    _check_not_half_labelled(root, subdirs, classes)
    good, skipped = check_images(list_image_files(root))
    note = None
    if subdirs:
        note = (f"none of {root}'s folders ({_preview(sorted(subdirs))}) is a class of the model "
                f"({_preview(classes)}): no labels, so no accuracy")
    return LabelledFiles(good, None, skipped, note=note, source=str(root.resolve()))


def _csv_rows(path: Path, classes: list[str], split: str, flag: str | None) -> LabelledFiles:
    """The rows of a ``path,label[,split]`` CSV in ``split`` (every row of a two-column one, for val)."""
    from edgetl.data.folder import check_images
    from edgetl.data.labels_csv import read_csv

    rows = read_csv(path)
    if rows[0].split is None:
        if split != "val":
            raise EdgetlError(f"{path}: no split column, so no {split} rows; add a third column "
                              f"(path,label,split) or pass a CSV of {split} images alone")
        chosen, source = rows, f"{path.resolve()} (all {len(rows)} rows)"
    else:
        chosen = [r for r in rows if r.split == split]
        if not chosen:
            have = ", ".join(s for s in SPLITS if any(r.split == s for r in rows))
            fix = f"pass {flag} to pick one of those" if flag else f"mark some rows {split}"
            raise EdgetlError(f"{path}: no {split} rows (it has {have}); {fix}")
        source = f"{path.resolve()} ({split} rows)"
    labels = []
    for row in chosen:
        label = _label_index(row.label, classes)
        if label is None:
            raise EdgetlError(f"{path}:{row.line}: label {row.label!r} is not a class of the model "
                              f"({_preview(classes)}); fix the row, or judge the model trained on these labels")
        labels.append(label)
    good, skipped = check_images([r.path for r in chosen])
    keep = set(good)
    pairs = [(r.path, lab) for r, lab in zip(chosen, labels, strict=True) if r.path in keep]
    return LabelledFiles([p for p, _ in pairs], [lab for _, lab in pairs], skipped, source=source)


def _label_index(label: str, classes: list[str]) -> int | None:
    if label in classes:
        return classes.index(label)
    return imagenet_index(label) if classes == IMAGENET_CLASSES else None


def _made_split(data: Path, classes: list[str], trained: TrainedOn, split: str) -> LabelledFiles:
    """The val (or train) images edgetl split off the run's own data: training's seeded split, redone by name."""
    from edgetl.data.folder import check_images

    found = trained.splits
    assert found is not None and found.asked is not None  # made_split_of checked both
    samples = found.val if split == "val" else found.train
    names = [found.classes[s.label] for s in samples]
    stray = next((n for n in names if n not in classes), None)
    if stray is not None:
        raise EdgetlError(f"{data}: class {stray!r} is not one of the model's; the data changed since {trained.run} "
                          "trained; pass a folder of held-out images")
    good, skipped = check_images([s.path for s in samples])
    keep = set(good)
    pairs = [(s.path, classes.index(n)) for s, n in zip(samples, names, strict=True) if s.path in keep]
    part = f"{found.asked:g} val split" if split == "val" else f"train part of the {found.asked:g} val split"
    source = f"{trained.data} (the {part} edgetl made for {trained.run.name}, seed {trained.seed})"
    return LabelledFiles([p for p, _ in pairs], [lab for _, lab in pairs], skipped, source=source)


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
