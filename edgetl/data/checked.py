"""Remember each image file's check, so the next run over the same data decodes only what changed.

Checking decodes every file (:func:`edgetl.data.folder.check_images`): minutes for ten thousand phone
photos, hours for ImageNet, on every ``train``, ``eval`` and ``parity``. The verdicts live in one SQLite
file (safe for DDP ranks checking at once, and for an interrupted check: what was committed is kept),
keyed by the file's resolved path, size, modification and change times, Pillow's version and
:data:`CHECK_VERSION`. An edited, replaced or ``chmod``-ed file is checked again, and so is every file after
an upgrade that may read images differently. The cache only saves time: when it cannot be used, the check
runs in full and says so once.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

CACHE_ENV = "EDGETL_IMAGE_CHECK_CACHE"  # the SQLite file; "off" checks every file every time
CHECK_VERSION = 1  # raise when what a check decides changes: older verdicts are then ignored

Key = tuple[str, int, int, int]
T = TypeVar("T")


def _default_path() -> Path:
    return Path.home() / ".cache" / "edgetl" / "image-check.sqlite"


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
        from PIL import __version__ as pillow

        self.path = path
        self.version = f"{CHECK_VERSION}/{pillow}"
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
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)  # another rank may be writing
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
        rows = [(*key, self.version, verdict) for key, verdict in verdicts.items()]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
