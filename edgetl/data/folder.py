"""Find labelled images: ImageFolder trees, one folder split by a seeded stratified split, or a CSV
(:mod:`edgetl.data.labels_csv`).

Every image is decoded once up front, so a corrupt, truncated or non-image file is listed once with
its reason and left out, instead of crashing an epoch halfway through. The check runs in threads and its
verdicts are cached per file (:mod:`edgetl.data.checked`), so a rerun decodes only new or changed files.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from edgetl.data.checked import CheckCache, file_key
from edgetl.data.images import GRAPHIC, IMAGE_EXTENSIONS, OK, READ_ERROR, check_image, decode_threads
from edgetl.errors import EdgetlError, name_list
from edgetl.progress import show_progress


@dataclass(frozen=True)
class Sample:
    """One image file and its class index."""

    path: Path
    label: int


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


CHECK_CHUNK = 512  # files decoded between two cache commits

# Photo formats PIL cannot decode here: listed as skipped with the fix, never dropped in silence.
UNSUPPORTED = (".heic", ".heif", ".avif", ".jxl", ".dng", ".cr2", ".nef", ".arw", ".raw")


def _visible(root: Path) -> list[Path]:
    """Everything below ``root`` outside hidden files and folders (``.DS_Store``, ``.thumbnails/``), sorted."""
    return sorted(p for p in root.rglob("*") if not any(part.startswith(".") for part in p.relative_to(root).parts))


def _images(root: Path) -> list[Path]:
    return [p for p in _visible(root) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]


def odd_files(root: Path) -> list[tuple[Path, str]]:
    """Files below ``root`` that look like photos but cannot be used: broken links, formats PIL cannot read."""
    out = []
    for p in _visible(root):
        if p.is_symlink() and not p.exists():
            out.append((p, "broken link; point it at the image or delete it"))
        elif p.suffix.lower() in UNSUPPORTED:
            out.append((p, f"{p.suffix.lower()} is not a format edgetl reads; convert it to JPEG or PNG"))
    return out


def list_image_files(folder: str | Path) -> list[Path]:
    """All image files below ``folder`` (recursive, sorted, hidden ones left out); an error when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise EdgetlError(f"{root}: not a directory; pass a folder of images")
    files = _images(root)
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
    items = list(dict.fromkeys(paths))  # a file listed twice (CSV) is checked and reported once
    verdicts = image_verdicts(items, describe)
    good = [p for p in items if verdicts[p] in (OK, GRAPHIC)]
    bad = [(p, verdicts[p]) for p in items if verdicts[p] not in (OK, GRAPHIC)]
    good, placeholders = drop_placeholders(good, {p for p in good if verdicts[p] == GRAPHIC})
    return good, bad + placeholders


def image_verdicts(items: list[Path], describe: str = "Checking images") -> dict[Path, str]:
    """:func:`check_image`'s verdict for each file: from the cache when unchanged, else decoded in threads."""
    from rich.progress import track

    cache = CheckCache.from_env()
    keys = {p: file_key(p) for p in items}
    known = cache.lookup(k for k in keys.values() if k is not None)
    verdicts = {p: known[k] for p, k in keys.items() if k in known}
    todo = [p for p in items if p not in verdicts]
    Image.init()  # every format plugin registered before the threads start: none misses one being added
    with warnings.catch_warnings():  # once, around every thread (not thread-safe): PIL's warnings on odd files
        warnings.simplefilter("ignore")
        pool = ThreadPoolExecutor(decode_threads())
        try:
            decoded = _decode(todo, pool, lambda done: cache.store(
                {k: v for p, v in done if (k := keys[p]) and not v.startswith(READ_ERROR)}))
            verdicts.update(track(decoded, total=len(todo), description=describe, transient=True,
                                  disable=len(todo) < 200 or not show_progress()))
        finally:
            pool.shutdown(cancel_futures=True)  # Ctrl-C: decode no further file
            cache.close()
    return verdicts


def _decode(todo: list[Path], pool: ThreadPoolExecutor,
            store: Callable[[list[tuple[Path, str]]], None]) -> Iterator[tuple[Path, str]]:
    """(file, verdict) as decoded, a chunk at a time; each finished chunk is stored, so a check cut short resumes."""
    for start in range(0, len(todo), CHECK_CHUNK):
        chunk = todo[start:start + CHECK_CHUNK]
        done = []
        for item in zip(chunk, pool.map(check_image, chunk), strict=True):
            done.append(item)
            yield item
        store(done)


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
    found = {d.name: _images(d) for d in dirs}
    empty = [name for name, files in found.items() if not files]
    if empty:
        raise EdgetlError(f"{root / empty[0]}: class folder has no images{_unusable(odd_files(root / empty[0]))}; "
                          "add images or remove the folder")
    names = classes if classes is not None else sorted(found)
    return names, found


def _samples(found: dict[str, list[Path]], classes: list[str]) -> list[Sample]:
    index = {c: i for i, c in enumerate(classes)}
    return [Sample(p, index[c]) for c in sorted(found) for p in found[c]]


def _unusable(skipped: list[tuple[Path, str]], under: str = "") -> str:
    """" (N file(s) unusable, e.g. PATH: REASON)" for the skipped files whose path contains ``under``."""
    hits = [(p, r) for p, r in skipped if under in p.parts or not under]
    return f" ({len(hits)} file(s) unusable, e.g. {hits[0][0]}: {hits[0][1]})" if hits else ""


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
                          f"{_unusable([(p, r) for p, r in bad if p in files])}; add some or remove the class")
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
    return EdgetlError(f"{where}: the {name} split has no usable images{_unusable(skipped)}; {fix}")


def split_warnings(split: DataSplit) -> list[str]:
    """Classes validation or the test cannot score, a split far above the fraction asked, and folders the layout
    leaves unused: said before training."""
    out = list(split.notes)
    missing = _absent(split.classes, split.val)
    if missing:
        out.append(f"no validation images for class(es) {name_list(missing)}: val top-1 and best.safetensors "
                   "ignore them; add validation images of each class")
    missing = _absent(split.classes, split.test) if split.test else []
    if missing:
        out.append(f"no test images for class(es) {name_list(missing)}: test top-1 says nothing of them; add test "
                   "images of each class")
    share = len(split.val) / max(1, len(split.train) + len(split.val))
    if split.val_split is not None and share > 1.5 * split.val_split:
        out.append(f"--val-split {split.val_split:g} gave {share:.0%} of the images to validation: every class "
                   "with two or more images keeps one there, and yours are small; add images, or lay out train/ "
                   "and val/ folders yourself")
    return out


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
    if not root.exists():
        raise EdgetlError(f"{root}: data not found; pass a folder (DIR/train, DIR/val or DIR/<class>) or a CSV")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise EdgetlError(f"{root}: not a folder or .csv; pass an ImageFolder directory or a path,label CSV")
        found = _csv_splits(root, val_split, seed)
    else:
        found = _folder_splits(root, val_split, seed)
    _, bad = check_images([s.path for s in found.train + found.val + found.test])
    bad_set = {p for p, _ in bad}
    odd = odd_files(root) if root.is_dir() else []
    split = DataSplit(found.classes, _drop_bad(found.train, bad_set), _drop_bad(found.val, bad_set), bad + odd,
                      found.asked, _drop_bad(found.test, bad_set), found.given, found.folders, found.notes)
    return _validate(split, root, found, bad)


SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def split_folders(root: Path) -> dict[str, Path]:
    """``train``/``val``/``test`` → the folder of ``root`` that holds it, named in any case, ``valid/`` and
    ``validation/`` for val (as Roboflow and Kaggle sets name it)."""
    out: dict[str, Path] = {}
    for d in _class_dirs(root):
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
        classes, found = _scan_class_tree(folders["train"])
        train, val, asked = _samples(found, classes), _held_out(folders["val"], classes), None
    else:
        classes, found = _scan_class_tree(folders.get("train", root))
        asked = DEFAULT_VAL_SPLIT if val_split is None else val_split
        train, val = _stratified_split(_samples(found, classes), asked, seed)
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
    if not _class_dirs(folder):
        raise EdgetlError(f"{folder}: no class folders; expected {folder}/<class>/<image>, or remove {folder.name}/")
    _, found = _scan_class_tree(folder)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise EdgetlError(f"{folder / unknown[0]}: class {unknown[0]!r} is in {folder.name} but not in train; "
                          f"add training images or remove it from {folder.name}")
    return _samples(found, classes)


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
    return [s for s in samples if s.path in keep], bad + odd_files(root)


def report_skipped(skipped: list[tuple[Path, str]]) -> None:
    """Print the files left out, once, so the user can fix or delete them."""
    if not skipped:
        return
    from rich.console import Console

    console = Console(stderr=True)
    console.print(f"[yellow]skipped {len(skipped)} file(s) that are not usable images:[/yellow]")
    for path, reason in skipped:
        console.print(f"  {path}: {reason}", highlight=False, soft_wrap=True)  # one grep-able line per file
