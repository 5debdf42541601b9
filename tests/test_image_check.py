"""The up-front image check: threads, large JPEGs decoded at reduced scale, verdicts cached per file."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from conftest import HYMENOPTERA
from PIL import Image

import edgetl.data.folder as folder
from edgetl.data.checked import CACHE_ENV
from edgetl.data.folder import check_images
from edgetl.data.images import CHECK_SIDE, READ_ERROR, check_image


@pytest.fixture()
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Six real photos and a text file posing as one, with a cache of their own."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "checks.db"))
    out = tmp_path / "photos"
    out.mkdir()
    for src in sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:6]:
        shutil.copy(src, out / src.name)
    (out / "notes.jpg").write_text("not an image")
    return sorted(out.iterdir())


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the check decodes from now on (the real check still runs)."""
    decoded: list[Path] = []

    def check(path: Path) -> str:
        decoded.append(path)
        return check_image(path)

    monkeypatch.setattr(folder, "check_image", check)
    return decoded


def test_a_rerun_decodes_only_new_or_changed_files(photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    first = check_images(photos)
    assert [p.name for p, _ in first[1]] == ["notes.jpg"] and len(first[0]) == 6
    decoded = _counting(monkeypatch)
    assert check_images(photos) == first and decoded == []  # every verdict from the cache
    cut = photos[0]
    cut.write_bytes(cut.read_bytes()[:2000])  # truncated after the first run: checked again, now unusable
    good, bad = check_images(photos)
    assert decoded == [cut]
    assert {p.name for p, _ in bad} == {"notes.jpg", cut.name} and "runcated" in dict(bad)[cut]


def test_an_interrupted_check_keeps_what_it_finished(photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder, "CHECK_CHUNK", 2)
    monkeypatch.setattr(folder, "check_workers", lambda: 1)
    calls = 0

    def interrupted(path: Path) -> str:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt
        return check_image(path)

    monkeypatch.setattr(folder, "check_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        check_images(photos)
    decoded = _counting(monkeypatch)
    check_images(photos)
    assert decoded == photos[4:]  # two chunks of two were stored before Ctrl-C


def test_an_unusable_cache_warns_once_and_checks_in_full(photos: list[Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.db"
    broken.write_text("not a database")
    monkeypatch.setenv(CACHE_ENV, str(broken))
    good, bad = check_images(photos)
    assert len(good) == 6 and [p.name for p, _ in bad] == ["notes.jpg"]
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("cache unusable") == 1 and f"{broken}" in err and CACHE_ENV in err
    monkeypatch.setenv(CACHE_ENV, "off")
    decoded = _counting(monkeypatch)
    check_images(photos)
    check_images(photos)
    assert decoded == photos + photos  # off: every file, every time
    assert broken.read_text() == "not a database"  # the user's file is left as it was


def test_large_jpegs_are_checked_at_reduced_scale_and_truncation_still_fails(tmp_path: Path) -> None:
    photo = Image.open(sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[0]).convert("RGB").resize((3000, 2000))
    whole = tmp_path / "whole.jpg"
    photo.save(whole, quality=90)
    for progressive in (False, True):
        cut = tmp_path / f"cut-{progressive}.jpg"
        photo.save(cut, quality=90, progressive=progressive)
        cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
        assert "truncated" in check_image(cut)
    assert check_image(whole) == "ok"
    with Image.open(whole) as img:
        img.draft(None, (CHECK_SIDE, CHECK_SIDE))
        assert min(img.size) >= CHECK_SIDE and img.size == (1500, 1000)  # what the check decodes: half a side


def test_threads_leave_the_warning_filters_as_they_were(tmp_path: Path) -> None:
    palette = Image.new("P", (40, 30))
    palette.info["transparency"] = b"\x00" * 8  # PIL warns on loading such a palette
    paths = []
    for i in range(16):
        palette.save(tmp_path / f"p{i}.png", transparency=b"\x00" * 8)
        paths.append(tmp_path / f"p{i}.png")
    before = list(warnings.filters)
    check_images(paths)
    assert warnings.filters == before


def test_a_file_system_error_is_not_remembered(photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    odd = photos[0].parent / "folder.jpg"
    odd.mkdir()  # the OS refuses to read it (as it would a file without read permission): it may pass later
    (_, bad), decoded = check_images([*photos, odd]), _counting(monkeypatch)
    assert dict(bad)[odd].startswith(READ_ERROR)
    check_images([*photos, odd])
    assert decoded == [odd]
