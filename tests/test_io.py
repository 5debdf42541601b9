"""Atomic writes: the usual file mode, nothing left behind on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgetl.io import atomic_path, atomic_write_text


def test_atomic_write_gets_the_mode_of_a_plain_write(tmp_path: Path) -> None:
    import torch

    from edgetl.checkpoint import save_tensors

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        save_tensors(tmp_path / "w.safetensors", {"w": torch.zeros(2)})  # safetensors resets the mode it gets
        (tmp_path / "b.json").write_text("{}")
    finally:
        os.umask(old)
    for name in ("a.json", "w.safetensors"):  # a deploy service of another user can read the checkpoint
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == stat.S_IMODE((tmp_path / "b.json").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    """As open(path, "w") would: a deployment that links model.onnx to a store keeps its link."""
    (tmp_path / "store").mkdir()
    target, link = tmp_path / "store" / "model.json", tmp_path / "model.json"
    target.write_text("old")
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "store"]


def test_a_busy_folder_names_what_holds_it(tmp_path: Path) -> None:
    from edgetl.errors import EdgetlError
    from edgetl.io import dir_lock

    busy = rf"another edgetl process \(pid {os.getpid()}\) is calibrating in it"
    with dir_lock(tmp_path, "calibrating"), pytest.raises(EdgetlError, match=busy), dir_lock(tmp_path, "training"):
        pass
    with dir_lock(tmp_path, "training"):  # released: free again, and the file no longer names the last holder
        pass
    assert (tmp_path / ".lock").read_text() == ""


def test_a_checkpoint_that_cannot_be_written_is_a_one_line_error(tmp_path: Path) -> None:
    """A full disk, as a file-size limit makes it: the write fails in safetensors' own error type."""
    import subprocess
    import sys

    code = f"""
import resource, signal, torch
from edgetl.errors import EdgetlError
from edgetl.checkpoint import save_tensors
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    save_tensors({str(tmp_path / 'w.safetensors')!r}, {{"w": torch.zeros(100_000)}})
except EdgetlError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "w.safetensors: cannot write it (" in out.stdout and "free disk space" in out.stdout
    assert not list(tmp_path.iterdir())  # no partial file left behind
