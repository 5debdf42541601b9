"""Atomic file writes and hashing: an interrupted run never leaves a half-written artifact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    A symlink is written through, as ``open(path, "w")`` would: its target changes, the link stays a link.
    """
    target = Path(path)
    if target.is_symlink():
        target = target.resolve()
    if target.is_dir():
        raise EdgetlError(f"{target}: is a folder; write to a file path instead")
    ensure_writable_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise EdgetlError(f"{target}: cannot write it ({exc.strerror}); choose another path") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes 0600, and some writers (safetensors) reset the mode: give the file the usual one
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_dir_public(path: Path) -> Path:
    """Give a directory from ``mkdtemp`` (mode 0700) the mode ``mkdir`` would have given it."""
    path.chmod(0o777 & ~current_umask())
    return path


def cache_dir() -> Path:
    """edgetl's cache folder: ``$XDG_CACHE_HOME/edgetl``, else ``~/.cache/edgetl`` (not created here)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgetl"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json_text(obj) + "\n")


def json_text(obj: Any, level: int = 0) -> str:
    """JSON indented by two spaces, except that a list of numbers stays on one line.

    ``json.dumps(indent=2)`` puts each number on a line of its own: a 1000-class confusion matrix became a
    million lines; here it is a thousand, one per row.
    """
    pad = "  " * (level + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{json.dumps(k if isinstance(k, str) else json.dumps(k))}: {json_text(v, level + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad[2:] + "}"
    if isinstance(obj, (list, tuple)) and obj:
        if all(v is None or isinstance(v, (int, float)) for v in obj):
            return json.dumps(obj)
        return "[\n" + ",\n".join(pad + json_text(v, level + 1) for v in obj) + "\n" + pad[2:] + "]"
    return json.dumps(obj)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, turning a missing or malformed file into a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise EdgetlError(f"{p}: file not found; check the path, or run again the edgetl step that writes it")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgetlError(f"{p}: not valid JSON ({exc}); re-create it or point to another file") from None


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and check that files can be written into it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgetlError(f"{p}: cannot create output directory ({exc.strerror}); choose another with --out") from None
    if not os.access(p, os.W_OK):
        raise EdgetlError(f"{p}: output directory is not writable; fix its permissions or choose another with --out")
    return p


@contextlib.contextmanager
def dir_lock(path: str | os.PathLike[str], doing: str) -> Iterator[None]:
    """Hold ``path/.lock`` for the block, so a second edgetl process cannot write the same directory.

    An advisory ``flock``: the kernel releases it when the process ends, even on SIGKILL, so a crashed
    run never leaves a stale lock. The holder writes what it is ``doing`` into the file, so the one turned away
    can say what it waits for. Where ``fcntl`` is missing (Windows) the block runs unguarded.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(Path(path) / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            what, _, pid = fh.read().strip().partition("\n")
            who = f"another edgetl process (pid {pid})" if pid else "another edgetl process"
            raise EdgetlError(f"{path}: {who} is {what or doing} in it; wait for that one to finish or choose "
                              "another directory") from None
        fh.truncate(0)
        fh.write(f"{doing}\n{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)  # a holder that writes nothing (an older edgetl) is then not taken for this one


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
