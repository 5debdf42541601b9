"""The up-front image check: threads, large JPEGs decoded at reduced scale, verdicts cached per file."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from conftest import HYMENOPTERA
from PIL import Image

import edgetl.data.checked as checked
import edgetl.data.folder as folder
from edgetl.data.checked import CACHE_ENV
from edgetl.data.folder import check_images
from edgetl.data.images import CHECK_SIDE, READ_ERROR, check_image


@pytest.fixture()
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Six real photos and a text file posing as one, with a cache of their own that trusts fresh files."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "checks.db"))
    monkeypatch.setattr(checked, "RECENT_NS", 0)  # these files were written a moment ago
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
    monkeypatch.setattr(folder, "decode_threads", lambda: 1)
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
    assert sorted(decoded) == sorted(photos + photos)  # off: every file, every time (threads: in any order)
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


def test_pil_warnings_are_silenced_in_every_thread_and_the_filters_restored(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``catch_warnings`` is not thread-safe: the check silences PIL once, around its threads."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL warns past this, refuses past twice it
    paths = []
    for i in range(16):
        Image.new("RGB", (40, 40), (i, 100, 200)).save(tmp_path / f"p{i}.png")  # 1600 px: a bomb *warning*
        paths.append(tmp_path / f"p{i}.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Image.open(paths[0]).close()
        assert [w.category for w in caught] == [Image.DecompressionBombWarning]  # what PIL says of each file
        caught.clear()
        before = list(warnings.filters)
        good, bad = check_images(paths)
        assert warnings.filters == before and caught == [] and len(good) == 16 and bad == []


def test_a_file_system_error_is_not_remembered(photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    odd = photos[0].parent / "folder.jpg"
    odd.mkdir()  # the OS refuses to read it (as it would a file without read permission): it may pass later
    (_, bad), decoded = check_images([*photos, odd]), _counting(monkeypatch)
    assert dict(bad)[odd].startswith(READ_ERROR)
    check_images([*photos, odd])
    assert decoded == [odd]


def test_a_file_changed_a_moment_ago_is_not_remembered(photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a file system with one-second times, a same-size rewrite right after the check would keep its key."""
    monkeypatch.setattr(checked, "RECENT_NS", 2_000_000_000)
    check_images(photos)
    decoded = _counting(monkeypatch)
    check_images(photos)
    assert sorted(decoded) == photos  # all were written within the last two seconds


def test_a_flat_grey_jpeg_is_judged_as_a_full_decode_judges_it(tmp_path: Path) -> None:
    """Reduced-scale decoding averages away a JPEG's ringing, which made a large flat grey JPEG look like a
    placeholder graphic; the check confirms with a full decode, as training sees the file."""
    from PIL import ImageDraw

    from edgetl.data.images import is_grey_graphic, load_rgb

    for side in (1023, 1024, 2048):
        path = tmp_path / f"grey{side}.jpg"
        img = Image.new("RGB", (side, side), (200, 200, 200))
        draw = ImageDraw.Draw(img)
        draw.rectangle((side * 3 // 8, side // 3, side * 5 // 8, side * 2 // 3), fill=(150, 150, 150))
        draw.text((side // 2 - 40, side * 3 // 4), "image not found", fill=(90, 90, 90))
        img.save(path, quality=90)
        assert check_image(path) == ("graphic" if is_grey_graphic(load_rgb(path)) else "ok"), side


def test_map_images_keeps_order_and_silences_pil_in_its_threads(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What eval, parity and calibration decode with: the results of a plain loop, in order, and no warnings."""
    from edgetl.data.images import decode_rgb, map_images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # each 40x40 file gets a DecompressionBombWarning
    paths = []
    for i in range(24):
        Image.new("RGB", (40, 40), (i * 10, 0, 0)).save(tmp_path / f"p{i}.png")
        paths.append(tmp_path / f"p{i}.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        reds = list(map_images(lambda p: decode_rgb(p).getpixel((0, 0))[0], paths))
        assert reds == [i * 10 for i in range(24)] and caught == [] and warnings.filters == before
