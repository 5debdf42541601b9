"""Remember each image file's check, so the next run over the same data decodes only what changed.

Checking decodes every file (:func:`edgetl.data.folder.check_images`): minutes for ten thousand phone
photos, hours for ImageNet, on every ``train``, ``eval`` and ``parity``. The verdicts live in one SQLite
file (safe for DDP ranks checking at once, and for an interrupted check: what was committed is kept),
keyed by the file's absolute path, size, modification and change times, Pillow's version and settings, and
:data:`CHECK_VERSION`. An edited, replaced or ``chmod``-ed file is checked again, and so is every file after
an upgrade that may read images differently. A file changed within :data:`RECENT_NS` of its check is not
remembered: on a file system with coarse times, a same-size rewrite in that window keeps its key. The cache
only saves time: when it cannot be used, the check runs in full and says so.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

CACHE_ENV = "EDGETL_IMAGE_CHECK_CACHE"  # the SQLite file; "off" checks every file every time
CHECK_VERSION = 1  # raise when what a check decides changes: older verdicts are then ignored
RECENT_NS = 2_000_000_000  # as git's "racily clean" index entries: too fresh to trust its times

Key = tuple[str, int, int, int]
T = TypeVar("T")


def _default_path() -> Path:
    from edgetl.io import cache_dir

    return cache_dir() / "image-check.sqlite"


def file_key(path: Path) -> Key | None:
    """(absolute path, size, mtime_ns, ctime_ns), or None when the file cannot be stat-ed (checked anyway).

    ``stat`` follows a link, so a link's key changes with its target; no ``resolve`` (a syscall per folder level).
    """
    try:
        st = path.stat()
        return os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns
    except OSError:
        return None


class CheckCache:
    """Verdicts of earlier checks; every method is a no-op after the cache turned out unusable."""

    def __init__(self, path: Path | None) -> None:
        from PIL import Image, ImageFile
        from PIL import __version__ as pillow

        self.path = path
        # what decides a verdict besides the bytes: edgetl's check, Pillow and the two settings a user may change
        self.version = f"{CHECK_VERSION}/{pillow}/{Image.MAX_IMAGE_PIXELS}/{ImageFile.LOAD_TRUNCATED_IMAGES}"
        self.db: sqlite3.Connection | None = None
        if path is not None:
            self._guard(lambda: self._connect(path))

    @classmethod
    def from_env(cls) -> CheckCache:
        value = os.environ.get(CACHE_ENV, "")
        if value.lower() == "off":
            return cls(None)
        try:
            return cls(Path(value) if value else _default_path())
        except RuntimeError:  # no home folder (a bare container user): check without a cache
            return cls(None)

    def _connect(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # another rank may be writing (a transaction takes milliseconds); Ctrl-C waits out the timeout at most
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS checks (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER, "
                        "ctime INTEGER, version TEXT, verdict TEXT)")

    def _guard(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn``; on a database or file-system error, warn once and carry on without the cache."""
        try:
            return fn()
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)
            return None

    def _disable(self, exc: BaseException) -> None:
        from rich.console import Console

        if self.db is not None:
            self.db.close()
        self.db = None
        Console(stderr=True).print(
            f"[yellow]warning:[/yellow] {self.path}: image-check cache unusable ({exc}); checking every image. "
            f"Delete the file, or set {CACHE_ENV} to a writable file (or 'off')", highlight=False, soft_wrap=True)

    def lookup(self, keys: Iterable[Key]) -> dict[Key, str]:
        """Known verdicts for ``keys``; a file whose size or times changed since is unknown."""
        wanted = list(keys)
        return self._guard(lambda: self._lookup(wanted)) or {}

    def _lookup(self, keys: list[Key]) -> dict[Key, str]:
        if self.db is None:
            return {}
        wanted = {k[0]: k for k in keys}
        out: dict[Key, str] = {}
        paths = list(wanted)
        for i in range(0, len(paths), 500):  # SQLite caps the parameters of one statement
            chunk = paths[i:i + 500]
            rows = self.db.execute(f"SELECT path, size, mtime, ctime, version, verdict FROM checks WHERE path IN "
                                   f"({','.join('?' * len(chunk))})", chunk)
            for path, size, mtime, ctime, version, verdict in rows:
                key = wanted[path]
                if (size, mtime, ctime, version) == (*key[1:], self.version):
                    out[key] = verdict
        return out

    def store(self, verdicts: dict[Key, str]) -> None:
        """Record ``verdicts`` in one transaction: a check cut short keeps every batch stored before."""
        if verdicts:
            self._guard(lambda: self._store(verdicts))

    def _store(self, verdicts: dict[Key, str]) -> None:
        if self.db is None:
            return
        fresh = time.time_ns() - RECENT_NS
        rows = [(*key, self.version, verdict) for key, verdict in verdicts.items() if max(key[2], key[3]) < fresh]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
