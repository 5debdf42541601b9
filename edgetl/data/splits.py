"""Train, validation and test splits of a data set: ImageFolder trees (``train/``, ``val/`` or ``valid/``,
``test/``), one folder split by a seeded stratified split, or a CSV (:mod:`edgetl.data.labels_csv`).

The files themselves (listing, the image check, class folders) are :mod:`edgetl.data.folder`'s; this module
decides which image belongs to which split and refuses, with a fix, a layout that would train the wrong thing.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.data.folder import (
    Sample,
    check_images,
    class_dirs,
    odd_files,
    samples_of,
    scan_class_tree,
    unusable_note,
)
from edgetl.errors import EdgetlError, name_list


@dataclass
class DataSplit:
    """The classes, training, validation and test samples of a data set, and the files left out with why.

    ``test`` (a ``test/`` folder beside ``train/``) is scored once, after training, with the weights and
    temperature validation chose: the one figure nothing was chosen on.
    """

    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    val_split: float | None = None  # the fraction asked for when edgetl made the split; None for a val/ folder
    test: list[Sample] = field(default_factory=list)
    given: set[str] = field(default_factory=set)  # the splits the data names itself (folders, a CSV's column)
    folders: dict[str, Path] = field(default_factory=dict)  # split → its folder, in an ImageFolder tree
    notes: list[str] = field(default_factory=list)  # what the layout leaves unused, said before training
    dropped: dict[str, list[Sample]] = field(default_factory=dict)  # split → its samples the image check refused
    digest: dict[str, dict[str, int | str]] = field(default_factory=dict)  # split_digest of the split as listed


def _validate(split: DataSplit, source: Path, found: Found, bad: list[tuple[Path, str]]) -> DataSplit:
    """Two classes, images in each split, every class in training; each error names that split's unusable files."""
    if len(split.classes) < 2:
        what = "labels in the CSV" if source.is_file() else "class folders"
        raise EdgetlError(f"{source}: only one class ({split.classes[0] if split.classes else 'none'}); "
                          f"a classifier needs at least two {what}")
    for name in ("train", "val", "test"):
        listed = {s.path for s in getattr(found, name)}
        if listed and not getattr(split, name):
            given = name in found.given
            where = found.folders.get(name, source)
            raise _no_usable(where, name, given, [(p, r) for p, r in bad if p in listed or not given])
    counts = {s.label for s in split.train}
    empty = [i for i in range(len(split.classes)) if i not in counts]
    if empty:
        files = {s.path for s in found.train if s.label == empty[0]}
        raise EdgetlError(f"{source}: class {split.classes[empty[0]]!r} has no usable training images"
                          f"{unusable_note([(p, r) for p, r in bad if p in files])}; add some or remove the class")
    return split


def _no_usable(where: Path, name: str, given: bool, skipped: list[tuple[Path, str]]) -> EdgetlError:
    """The error for a split whose every file failed the check, with the fix that fits how the split was made:
    ``where`` is the split's folder, or the CSV or folder edgetl split."""
    if where.is_file() and given:
        fix = f"fix the {name} rows' files"
    elif given:
        fix = f"add images to {where}" + (", or remove the folder" if name == "test" else "")
    else:  # edgetl made the split: the files are the fix, or a larger share for val
        fix = "fix or replace the unusable files" + (", or change --val-split" if name == "val" else "")
    return EdgetlError(f"{where}: the {name} split has no usable images{unusable_note(skipped)}; {fix}")


def split_warnings(split: DataSplit) -> list[str]:
    """Classes validation or the test cannot score, a split far above the fraction asked, and folders the layout
    leaves unused: said before training."""
    out = list(split.notes)
    missing = _absent(split.classes, split.val)
    if missing:
        out.append(f"no validation images for class(es) {name_list(missing)}{_refused(split, 'val', missing)}: "
                   "val top-1 and best.safetensors ignore them; add validation images of each class")
    missing = _absent(split.classes, split.test) if split.test else []
    if missing:
        out.append(f"no test images for class(es) {name_list(missing)}{_refused(split, 'test', missing)}: test top-1 "
                   "says nothing of them; add test images of each class")
    share = len(split.val) / max(1, len(split.train) + len(split.val))
    if split.val_split is not None and share > 1.5 * split.val_split:
        out.append(f"--val-split {split.val_split:g} gave {share:.0%} of the images to validation: every class "
                   "with two or more images keeps one there, and yours are small; add images, or lay out train/ "
                   "and val/ folders yourself")
    return out


def _refused(split: DataSplit, name: str, missing: list[str]) -> str:
    """" (N listed there, all unusable)" when the image check, not the layout, emptied those classes."""
    labels = {split.classes.index(c) for c in missing}
    refused = [s for s in split.dropped.get(name, []) if s.label in labels]
    return f" ({len(refused)} listed there, all unusable)" if refused else ""


def _absent(classes: list[str], samples: list[Sample]) -> list[str]:
    seen = {s.label for s in samples}
    return [c for i, c in enumerate(classes) if i not in seen]


def _drop_bad(samples: list[Sample], bad: set[Path]) -> list[Sample]:
    return [s for s in samples if s.path not in bad]


def _stratified_split(samples: list[Sample], val_split: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    if not 0.0 < val_split < 1.0:
        raise EdgetlError(f"--val-split {val_split} must lie between 0 and 1 (e.g. 0.2)")
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.label].append(s)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_class):
        items = sorted(by_class[label], key=lambda s: str(s.path))
        rng.shuffle(items)
        n_val = max(1, round(len(items) * val_split)) if len(items) > 1 else 0
        val += items[:n_val]
        train += items[n_val:]
    return train, val


DEFAULT_VAL_SPLIT = 0.2


@dataclass
class Found:
    """What a data source lists, before the image check: classes, the three splits, the fraction edgetl split
    off for val (None when the data says which images are val) and the splits the data names itself."""

    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    asked: float | None
    given: set[str]
    folders: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _csv_splits(path: Path, val_split: float | None, seed: int) -> Found:
    """A CSV's samples: its split column where it has one, else a seeded stratified split."""
    from edgetl.data.labels_csv import SPLITS, read_csv

    rows = read_csv(path)
    classes = sorted({r.label for r in rows})
    index = {c: i for i, c in enumerate(classes)}
    part = {name: [Sample(r.path, index[r.label]) for r in rows if r.split == name] for name in SPLITS}
    asked = DEFAULT_VAL_SPLIT if val_split is None else val_split
    if rows[0].split is None:
        train, val = _stratified_split([Sample(r.path, index[r.label]) for r in rows], asked, seed)
        return Found(classes, train, val, [], asked, set())
    if not part["train"]:
        raise EdgetlError(f"{path}: no rows with split train; the split column must give training some images")
    trained = {r.label for r in rows if r.split == "train"}
    stray = next((r for r in rows if r.label not in trained), None)
    if stray is not None:
        raise EdgetlError(f"{path}:{stray.line}: class {stray.label!r} is in the {stray.split} rows but not in train; "
                          f"add train rows of it or remove it from {stray.split}")
    given = {name for name, samples in part.items() if samples}
    if part["val"] and val_split is not None:
        raise EdgetlError(f"{path}: --val-split {val_split} would split the train rows and leave the val rows unused; "
                          "drop --val-split, or leave val out of the split column")
    if part["val"]:
        return Found(classes, part["train"], part["val"], part["test"], None, given)
    train, val = _stratified_split(part["train"], asked, seed)  # no val rows: split them off the train rows
    return Found(classes, train, val, part["test"], asked, given)


def scan_data(data: str | Path, val_split: float | None = None, seed: int = 0) -> DataSplit:
    """Find the training, validation and (optional) test images described by ``data``.

    ``DIR`` with ``train/`` and ``val/`` → ImageFolder splits; ``DIR`` of class folders or a ``.csv``
    (``path,label``) → split with ``val_split`` (default 0.2), stratified and seeded. A ``test/`` folder beside
    ``train/`` is the held-out test set; a CSV's third column (``path,label,split``) says each row's split.
    """
    root = Path(data)
    found = find_splits(root, val_split, seed)
    _, bad = check_images([s.path for s in found.train + found.val + found.test])
    bad_set = {p for p, _ in bad}
    odd = odd_files(root) if root.is_dir() else []
    split = DataSplit(found.classes, _drop_bad(found.train, bad_set), _drop_bad(found.val, bad_set), bad + odd,
                      found.asked, _drop_bad(found.test, bad_set), found.given, found.folders, found.notes,
                      {name: [s for s in getattr(found, name) if s.path in bad_set] for name in ("val", "test")},
                      split_digest(found, root))
    return _validate(split, root, found, bad)


def find_splits(data: str | Path, val_split: float | None = None, seed: int = 0) -> Found:
    """Which file ``data`` puts in which split, by name only: no image is opened, so it is cheap to redo (to
    know which files a run trained on, or the val images edgetl split off for it)."""
    root = Path(data)
    if not root.exists():
        raise EdgetlError(f"{root}: data not found; pass a folder (DIR/train, DIR/val or DIR/<class>) or a CSV")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise EdgetlError(f"{root}: not a folder or .csv; pass an ImageFolder directory or a path,label CSV")
        return _csv_splits(root, val_split, seed)
    return _folder_splits(root, val_split, seed)


def split_digest(found: Found, root: Path) -> dict[str, dict[str, int | str]]:
    """Per split, how many files it lists and a SHA-256 of their names and classes: a run records it, so a later
    command that redoes the split (:mod:`edgetl.data.trained_on`) can tell when the data changed since."""
    base = root.resolve() if root.is_dir() else root.resolve().parent
    out: dict[str, dict[str, int | str]] = {}
    for name in ("train", "val", "test"):
        samples = getattr(found, name)
        lines = sorted(f"{_relative(s.path, base)}\t{found.classes[s.label]}" for s in samples)
        out[name] = {"images": len(samples), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}
    return out


def _relative(path: Path, base: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(resolved)


SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def split_folders(root: Path) -> dict[str, Path]:
    """``train``/``val``/``test`` → the folder of ``root`` that holds it, named in any case, ``valid/`` and
    ``validation/`` for val (as Roboflow and Kaggle sets name it)."""
    out: dict[str, Path] = {}
    for d in class_dirs(root):
        name = SPLIT_NAMES.get(d.name.lower())
        if name in out:
            raise EdgetlError(f"{d}: both {out[name].name}/ and {d.name}/ look like the {name} split; keep one")
        if name is not None:
            out[name] = d
    return out


def _folder_splits(root: Path, val_split: float | None, seed: int) -> Found:
    """An ImageFolder tree: ``train/`` + ``val/`` as given, else class folders split by ``val_split``; ``test/``
    beside ``train/`` whole."""
    folders = split_folders(root)
    for name in ("val", "test"):
        if "train" not in folders and name in folders:
            raise EdgetlError(f"{folders[name]}: a {folders[name].name}/ folder needs {root / 'train'}/<class>/ beside "
                              f"it, or it is read as a class; move the class folders into {root / 'train'}/ (or rename "
                              f"{folders[name].name}/ if it is a class)")
    if "val" in folders:
        if val_split is not None:
            raise EdgetlError(f"{folders['val']}: --val-split {val_split} would split train/ and leave this val/ "
                              "unused; drop --val-split, or pass a folder without val/")
        classes, found = scan_class_tree(folders["train"])
        train, val, asked = samples_of(found, classes), _held_out(folders["val"], classes), None
    else:
        classes, found = scan_class_tree(folders.get("train", root))
        asked = DEFAULT_VAL_SPLIT if val_split is None else val_split
        train, val = _stratified_split(samples_of(found, classes), asked, seed)
    test = _held_out(folders["test"], classes) if "test" in folders else []
    return Found(classes, train, val, test, asked, set(folders), folders, _unused_siblings(root))


def _unused_siblings(root: Path) -> list[str]:
    """``--data DIR/train`` beside ``DIR/val`` or ``DIR/test``: those are left unused, which is rarely meant."""
    if root.name.lower() != "train":
        return []
    others = {k: v for k, v in split_folders(root.parent).items() if k != "train"}
    if not others:
        return []
    return [f"{root} is a train/ folder: {' and '.join(f'{v.name}/' for v in others.values())} beside it are not "
            f"used (val is split off {root.name}/); pass --data {root.parent} to use them"]


def _held_out(folder: Path, classes: list[str]) -> list[Sample]:
    """The samples of ``val/`` or ``test/``, whose classes must all be training's."""
    if not class_dirs(folder):
        raise EdgetlError(f"{folder}: no class folders; expected {folder}/<class>/<image>, or remove {folder.name}/")
    _, found = scan_class_tree(folder)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise EdgetlError(f"{folder / unknown[0]}: class {unknown[0]!r} is in {folder.name} but not in train; "
                          f"add training images or remove it from {folder.name}")
    return samples_of(found, classes)
