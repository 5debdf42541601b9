"""The image files of a data set: listing, class folders, and the check that every file decodes.
Which file goes to train, val or test is :mod:`edgetl.data.splits`'s.

Every image is decoded once up front, so a corrupt, truncated or non-image file is listed once with
its reason and left out, instead of crashing an epoch halfway through. The check runs in threads and its
verdicts are cached per file (:mod:`edgetl.data.checked`), so a rerun decodes only new or changed files.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


def class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def scan_class_tree(root: Path, classes: list[str] | None = None) -> tuple[list[str], dict[str, list[Path]]]:
    """Class name → image files under ``root/<class>/``; empty class folders are an error."""
    dirs = class_dirs(root)
    if not dirs:
        raise EdgetlError(f"{root}: no class folders; expected {root}/<class>/<image> (ImageFolder layout)")
    unreadable = [d for d in dirs if not os.access(d, os.R_OK | os.X_OK)]
    if unreadable:
        raise EdgetlError(f"{unreadable[0]}: permission denied; make the class folder readable (chmod u+rx)")
    found = {d.name: _images(d) for d in dirs}
    empty = [name for name, files in found.items() if not files]
    if empty:
        raise EdgetlError(f"{root / empty[0]}: class folder has no images{unusable_note(odd_files(root / empty[0]))}; "
                          "add images or remove the folder")
    names = classes if classes is not None else sorted(found)
    return names, found


def samples_of(found: dict[str, list[Path]], classes: list[str]) -> list[Sample]:
    index = {c: i for i, c in enumerate(classes)}
    return [Sample(p, index[c]) for c in sorted(found) for p in found[c]]


def unusable_note(skipped: list[tuple[Path, str]], under: str = "") -> str:
    """" (N file(s) unusable, e.g. PATH: REASON)" for the skipped files whose path contains ``under``."""
    hits = [(p, r) for p, r in skipped if under in p.parts or not under]
    return f" ({len(hits)} file(s) unusable, e.g. {hits[0][0]}: {hits[0][1]})" if hits else ""


def scan_eval_folder(data: str | Path, classes: list[str]) -> tuple[list[Sample], list[tuple[Path, str]]]:
    """Labelled images in ``DIR/<class>/…`` (or ``DIR/val/<class>/…``) mapped onto a model's ``classes``."""
    root = Path(data)
    if not root.is_dir():
        raise EdgetlError(f"{root}: not a directory; pass a folder laid out as DIR/<class>/<image>")
    if (root / "val").is_dir():
        root = root / "val"
    _, found = scan_class_tree(root, classes)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise EdgetlError(f"{root / unknown[0]}: class {unknown[0]!r} is not one of the model's classes "
                          f"({name_list(classes, 10)})")
    samples = samples_of(found, classes)
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
