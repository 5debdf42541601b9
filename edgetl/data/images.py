"""Open image files as RGB, with a reason instead of a crash when a file is not a usable image."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# A "flat grey graphic": at most this many distinct colours, all grey (channels within GREY_SPREAD).
GRAPHIC_MAX_COLOURS = 64
GREY_SPREAD = 8
# A check decodes large JPEGs at a reduced scale, no smaller than this a side: 4x faster for a 12 MP photo,
# and the whole compressed stream is still read, so a truncated file fails as in a full decode.
CHECK_SIDE = 512
DECODE_THREADS = 8  # at most; past that, reading the files limits
OK, GRAPHIC = "ok", "graphic"  # verdicts of check_image; any other text is why the file is unusable
READ_ERROR = "cannot read"  # how a verdict from the file system (permissions, I/O) starts: it may pass later


T = TypeVar("T")
R = TypeVar("R")


class BadImage(Exception):
    """The file cannot be used as an image; ``str(exc)`` says why."""


def load_rgb(path: str | Path, draft: int | None = None) -> Image.Image:
    """Decode ``path`` fully and convert to RGB (grayscale, palette, CMYK and alpha images included).

    ``draft``: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale, keeping at least ``draft`` pixels a side.
    Raises :class:`BadImage` for unreadable, truncated or non-image files; PIL's warnings are silenced.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return decode_rgb(path, draft)


def decode_rgb(path: str | Path, draft: int | None = None) -> Image.Image:
    """:func:`load_rgb` with PIL's warnings left alone: ``catch_warnings`` is not thread-safe, so a caller
    decoding in threads silences them once, around all of its threads."""
    try:
        if Path(path).stat().st_size == 0:
            raise BadImage("empty file (0 bytes); restore it or delete it")
        with Image.open(path) as img:
            if draft:
                img.draft(None, (draft, draft))
            img.load()
            return to_rgb(img)
    except Image.DecompressionBombError:
        raise BadImage(f"too large for PIL's safety limit ({Image.MAX_IMAGE_PIXELS:,} pixels); downscale it "
                       "(the model sees a few hundred pixels a side anyway)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise BadImage("not an image") from None
        if isinstance(exc, OSError) and exc.errno is not None:  # the file system's error, not the file's bytes
            raise BadImage(f"{READ_ERROR} ({exc.strerror}); check the file's permissions and storage") from None
        raise BadImage(f"unreadable ({exc})") from None


def decode_threads() -> int:
    """Threads that decode at once: Pillow decodes and resizes outside the GIL, so each core is used."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(DECODE_THREADS, cores))


def map_images(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``fn`` over ``items`` on :func:`decode_threads` threads, results in order as they are ready.

    ``fn`` must leave PIL's warnings alone (:func:`decode_rgb`, not :func:`load_rgb`): ``catch_warnings``
    is not thread-safe, so they are silenced here, once, around all the threads.
    """
    with warnings.catch_warnings(), ThreadPoolExecutor(decode_threads()) as pool:
        warnings.simplefilter("ignore")
        yield from pool.map(fn, items)


def check_image(path: Path) -> str:
    """:data:`OK`, :data:`GRAPHIC` (may be a placeholder) or the reason ``path`` is not a usable image.

    Safe in threads: PIL's warnings are the caller's to silence (see :func:`decode_rgb`).
    """
    try:
        img = decode_rgb(path, draft=CHECK_SIDE)
        if is_grey_graphic(img) and img.size != _full_size(path):  # scaling averages away a JPEG's ringing,
            img = decode_rgb(path)  # so a flat grey photo may look like a graphic: judge it as training sees it
    except BadImage as exc:
        return str(exc)
    return GRAPHIC if is_grey_graphic(img) else OK


def _full_size(path: Path) -> tuple[int, int]:
    """The upright size of ``path`` without decoding it (as :func:`to_rgb` returns it)."""
    with Image.open(path) as img:
        turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation: a quarter turn swaps w and h
        return (img.height, img.width) if turned else img.size


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of ``img``, turned upright by its EXIF orientation; transparent pixels become white.

    Both as a viewer shows the photo: a phone stores a portrait shot sideways with an orientation tag, and
    deployment decoders (OpenCV's imread, browsers) apply the tag, so training must see the same pixels.
    """
    img = ImageOps.exif_transpose(img)  # a copy, turned when the tag says so
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):  # 16/32-bit grey: PIL's convert clips at 255
        return _deep_grey_to_rgb(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _deep_grey_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit (or 32-bit) grey scaled to 8 bits: a 16-bit PNG holds 0..65535, which RGB would clip to white."""
    import numpy as np

    grey = np.asarray(img, dtype=np.float64)
    top = 65535.0 if img.mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
    eight = np.clip(np.rint(grey * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(eight, "L").convert("RGB")


def is_grey_graphic(img: Image.Image) -> bool:
    """A few flat grey tones and no colour: what "image not found" stand-ins of web scrapes look like.

    Photos (grey ones included) have thousands of tones; ``getcolors`` stops counting past the limit,
    so this costs microseconds per photo. Whether such a file is a stand-in depends on the rest of
    the data set (see :func:`edgetl.data.folder.check_images`).
    """
    colours = (img if img.mode == "RGB" else img.convert("RGB")).getcolors(GRAPHIC_MAX_COLOURS)
    if colours is None:
        return False
    rgbs = [rgb for _, rgb in colours if isinstance(rgb, tuple)]  # RGB pixels are (r, g, b) tuples
    return all(max(rgb) - min(rgb) <= GREY_SPREAD for rgb in rgbs)
