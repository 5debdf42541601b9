"""Find labelled images: ImageFolder trees, one folder split by a seeded stratified split, or a CSV.

Every image is decoded once up front, so a corrupt, truncated or non-image file is listed once with
its reason and left out, instead of crashing an epoch halfway through.
"""

from __future__ import annotations

import csv
import os
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.data.images import IMAGE_EXTENSIONS, BadImage, is_grey_graphic, load_rgb
from edgetl.errors import EdgetlError, name_list
from edgetl.progress import show_progress


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class DataSplit:
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _is_image_name(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def list_image_files(folder: str | Path) -> list[Path]:
    """All image files below ``folder`` (recursive, sorted); an error when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise EdgetlError(f"{root}: not a directory; pass a folder of images")
    files = sorted(p for p in root.rglob("*") if _is_image_name(p))
    if not files:
        raise EdgetlError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}); point to a folder with images")
    return files


PLACEHOLDER_REASON = ("placeholder graphic (a few flat grey tones among photos, like an 'image not found' "
                      "stand-in); replace it with the real photo or delete it")


def drop_placeholders(good: list[Path], graphics: set[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(photos, skipped): flat grey graphics are left out of a set that is mostly photos.

    A scraper's "image not found" stand-in would otherwise be learnt, calibrated on or scored as a member
    of its class; a set of drawings keeps its graphics.
    """
    if not graphics or 2 * len(graphics) >= len(good):
        return good, []
    return [p for p in good if p not in graphics], [(p, PLACEHOLDER_REASON) for p in good if p in graphics]


def check_images(paths: Iterable[Path], describe: str = "Checking images") -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split ``paths`` into usable images and (path, reason) for the rest: files that do not decode and
    placeholder graphics (:func:`drop_placeholders`)."""
    from rich.progress import track

    good: list[Path] = []
    bad: list[tuple[Path, str]] = []
    graphics: set[Path] = set()
    items = list(dict.fromkeys(paths))  # a file listed twice (CSV) is checked and reported once
    for p in track(items, description=describe, transient=True, disable=len(items) < 200 or not show_progress()):
        try:
            img = load_rgb(p)
        except BadImage as exc:
            bad.append((p, str(exc)))
            continue
        good.append(p)
        if is_grey_graphic(img):
            graphics.add(p)
    good, placeholders = drop_placeholders(good, graphics)
    return good, bad + placeholders


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan_class_tree(root: Path, classes: list[str] | None = None) -> tuple[list[str], dict[str, list[Path]]]:
    """Class name → image files under ``root/<class>/``; empty class folders are an error."""
    dirs = _class_dirs(root)
    if not dirs:
        raise EdgetlError(f"{root}: no class folders; expected {root}/<class>/<image> (ImageFolder layout)")
    unreadable = [d for d in dirs if not os.access(d, os.R_OK | os.X_OK)]
    if unreadable:
        raise EdgetlError(f"{unreadable[0]}: permission denied; make the class folder readable (chmod u+rx)")
    found = {d.name: sorted(p for p in d.rglob("*") if _is_image_name(p)) for d in dirs}
    empty = [name for name, files in found.items() if not files]
    if empty:
        raise EdgetlError(f"{root / empty[0]}: class folder has no images; add images or remove the folder")
    names = classes if classes is not None else sorted(found)
    return names, found


def _samples(found: dict[str, list[Path]], classes: list[str]) -> list[Sample]:
    index = {c: i for i, c in enumerate(classes)}
    return [Sample(p, index[c]) for c in sorted(found) for p in found[c]]


def _validate(split: DataSplit, source: Path) -> DataSplit:
    if len(split.classes) < 2:
        what = "labels in the CSV" if source.is_file() else "class folders"
        raise EdgetlError(f"{source}: only one class ({split.classes[0] if split.classes else 'none'}); "
                          f"a classifier needs at least two {what}")
    for name, samples in (("train", split.train), ("val", split.val)):
        if not samples:
            raise EdgetlError(f"{source}: the {name} split has no usable images; add images or change --val-split")
    counts = {i for s in split.train for i in [s.label]}
    empty = [split.classes[i] for i in range(len(split.classes)) if i not in counts]
    if empty:
        raise EdgetlError(f"{source}: class {empty[0]!r} has no usable training images; add some or remove the class")
    return split


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


def _read_csv(path: Path) -> tuple[list[str], list[Sample]]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise EdgetlError(f"{path}: not a UTF-8 text CSV; save it as UTF-8 lines of 'path,label'") from None
    rows: list[tuple[Path, str]] = []
    for i, row in enumerate(csv.reader(lines)):
        if not row or (i == 0 and [c.strip().lower() for c in row[:2]] == ["path", "label"]):
            continue
        if len(row) < 2:
            raise EdgetlError(f"{path}:{i + 1}: expected 'path,label'; got {','.join(row)!r}")
        img = Path(row[0].strip())
        rows.append((img if img.is_absolute() else path.parent / img, row[1].strip()))
    if not rows:
        raise EdgetlError(f"{path}: CSV has no rows; expected lines of 'path,label'")
    missing = [p for p, _ in rows if not p.exists()]
    if missing:
        raise EdgetlError(f"{path}: {len(missing)} listed file(s) do not exist (first: {missing[0]}); fix the paths")
    classes = sorted({label for _, label in rows})
    index = {c: i for i, c in enumerate(classes)}
    return classes, [Sample(p, index[label]) for p, label in rows]


def scan_data(data: str | Path, val_split: float | None = None, seed: int = 0) -> DataSplit:
    """Find the training and validation images described by ``data``.

    ``DIR`` with ``train/`` and ``val/`` → ImageFolder splits; ``DIR`` of class folders or a ``.csv``
    (``path,label``) → split with ``val_split`` (default 0.2), stratified and seeded.
    """
    root = Path(data)
    if not root.exists():
        raise EdgetlError(f"{root}: data not found; pass a folder (DIR/train, DIR/val or DIR/<class>) or a CSV")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise EdgetlError(f"{root}: not a folder or .csv; pass an ImageFolder directory or a path,label CSV")
        classes, samples = _read_csv(root)
        train, val = _stratified_split(samples, 0.2 if val_split is None else val_split, seed)
    elif (root / "train").is_dir() and (root / "val").is_dir():
        if val_split is not None:
            raise EdgetlError(f"{root / 'val'}: --val-split {val_split} would split train/ and leave this val/ "
                              "unused; drop --val-split, or pass a folder without val/")
        classes, found = _scan_class_tree(root / "train")
        _, found_val = _scan_class_tree(root / "val")
        unknown = sorted(set(found_val) - set(found))
        if unknown:
            raise EdgetlError(f"{root / 'val' / unknown[0]}: class {unknown[0]!r} is in val but not in train; "
                              "add training images or remove it from val")
        train, val = _samples(found, classes), _samples(found_val, classes)
    else:
        base = root / "train" if (root / "train").is_dir() else root
        classes, found = _scan_class_tree(base)
        train, val = _stratified_split(_samples(found, classes), 0.2 if val_split is None else val_split, seed)
    _, bad = check_images([s.path for s in train + val])
    bad_set = {p for p, _ in bad}
    split = DataSplit(classes, _drop_bad(train, bad_set), _drop_bad(val, bad_set), bad)
    return _validate(split, root)


def scan_eval_folder(data: str | Path, classes: list[str]) -> tuple[list[Sample], list[tuple[Path, str]]]:
    """Labelled images in ``DIR/<class>/…`` (or ``DIR/val/<class>/…``) mapped onto a model's ``classes``."""
    root = Path(data)
    if not root.is_dir():
        raise EdgetlError(f"{root}: not a directory; pass a folder laid out as DIR/<class>/<image>")
    if (root / "val").is_dir():
        root = root / "val"
    _, found = _scan_class_tree(root, classes)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise EdgetlError(f"{root / unknown[0]}: class {unknown[0]!r} is not one of the model's classes "
                          f"({name_list(classes, 10)})")
    samples = _samples(found, classes)
    good, bad = check_images([s.path for s in samples])
    keep = set(good)
    return [s for s in samples if s.path in keep], bad


def report_skipped(skipped: list[tuple[Path, str]]) -> None:
    """Print the files left out, once, so the user can fix or delete them."""
    if not skipped:
        return
    from rich.console import Console

    console = Console(stderr=True)
    console.print(f"[yellow]skipped {len(skipped)} file(s) that are not usable images:[/yellow]")
    for path, reason in skipped:
        console.print(f"  {path}: {reason}", highlight=False, soft_wrap=True)  # one grep-able line per file
