"""Data layer: scanning, splits, bad files, RGB conversion, the built-in set, loaders, preprocessing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import HYMENOPTERA
from PIL import Image, ImageDraw

from edgetl.card import ModelCard, Preprocess
from edgetl.data.builtin import CLASSES, materialize_builtin
from edgetl.data.dataset import ImageDataset, class_counts, make_loader, set_epoch
from edgetl.data.folder import drop_placeholders, list_image_files, scan_eval_folder
from edgetl.data.images import BadImage, load_rgb
from edgetl.data.splits import scan_data, split_warnings
from edgetl.data.transforms import eval_array, eval_transform
from edgetl.errors import EdgetlError


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize_builtin(tmp_path_factory.mktemp("builtin") / "digits", per_class=12)


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_builtin_is_an_imagefolder_with_ten_classes(digits: Path) -> None:
    split = scan_data(digits)
    assert split.classes == CLASSES
    assert len(split.train) == 80 and len(split.val) == 40 and len(split.test) == 40
    assert class_counts(split.train, 10) == [8] * 10 and class_counts(split.test, 10) == [4] * 10
    assert materialize_builtin(digits, per_class=12) == digits  # reused, not rewritten
    paths = [{s.path.name for s in part if s.label == 3} for part in (split.train, split.val, split.test)]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])  # no digit in two splits


def test_the_test_split_leaves_train_and_val_as_they_were(tmp_path: Path) -> None:
    with_test = scan_data(materialize_builtin(tmp_path / "a", per_class=12))
    without = scan_data(materialize_builtin(tmp_path / "b", per_class=12, test_fraction=0))
    assert not without.test and not (tmp_path / "b" / "test").exists()
    for part in ("train", "val"):
        assert [s.path.name for s in getattr(with_test, part)] == [s.path.name for s in getattr(without, part)]
    every = scan_data(materialize_builtin(tmp_path / "c", per_class=None))  # no spare digits: train gives some
    assert len(every.test) == len(every.val) and len(every.train) + 2 * len(every.val) == 1797


def test_a_test_folder_beside_train_is_the_test_split(digits: Path, tmp_path: Path) -> None:
    data = _copy_tree(digits, tmp_path / "a")
    shutil.rmtree(data / "val")  # train/ + test/: val is split off train/, test/ stays whole
    split = scan_data(data)
    assert len(split.test) == 40 and len(split.train) + len(split.val) == 80
    assert {s.label for s in split.test} == set(range(10))
    shutil.rmtree(data / "test" / "digit_4")
    assert split_warnings(scan_data(data)) == ["no test images for class(es) digit_4: test top-1 says nothing of "
                                               "them; add test images of each class"]
    for png in (data / "test" / "digit_5").glob("*.png"):
        png.write_text("not a png")  # the check, not the layout, empties the class: said so
    assert split_warnings(scan_data(data)) == ["no test images for class(es) digit_4, digit_5 (4 listed there, all "
                                               "unusable): test top-1 says nothing of them; add test images of each "
                                               "class"]
    flat = tmp_path / "flat"  # class folders and a test/ (or val/) with no train/: not trained as a class
    for name in ("digit_1", "digit_2"):
        shutil.copytree(digits / "train" / name, flat / name)
    for name in ("test", "val"):
        shutil.copytree(digits / name, flat / name)
        with pytest.raises(EdgetlError, match=f"flat/{name}: a {name}/ folder needs .*flat/train/<class>/ beside it, "
                                              f"or it is read as a class; move the class folders into .*flat/train/"):
            scan_data(flat)
        shutil.rmtree(flat / name)
    assert scan_data(flat).classes == ["digit_1", "digit_2"]


def test_a_test_folder_must_hold_usable_images_of_trainings_classes(digits: Path, tmp_path: Path) -> None:
    data = _copy_tree(digits, tmp_path / "a")
    shutil.copytree(digits / "test" / "digit_3", data / "test" / "digit_extra")
    with pytest.raises(EdgetlError, match="test/digit_extra: class 'digit_extra' is in test but not in train; add "
                                          "training images or remove it from test$"):
        scan_data(data)
    data = _copy_tree(digits, tmp_path / "b")
    shutil.rmtree(data / "test")
    (data / "test" / "digit_0").mkdir(parents=True)
    (data / "test" / "digit_0" / "x.png").write_text("not a png")
    with pytest.raises(EdgetlError, match=r"b/test: the test split has no usable images \(1 file\(s\) unusable, e\.g\. "
                                          r".*x\.png: .*\); add images to .*b/test, or remove the folder$"):
        scan_data(data)
    shutil.rmtree(data / "test" / "digit_0")  # an empty test/: the way out is named
    with pytest.raises(EdgetlError, match=r"b/test: no class folders; expected .*/test/<class>/<image>, "
                                          r"or remove test/$"):
        scan_data(data)
    bad = tmp_path / "test"  # under a folder named test, a corrupt training file is not the test split's
    shutil.copytree(digits, bad / "d")
    (bad / "d" / "train" / "digit_0" / "broken.png").write_text("no")
    shutil.rmtree(bad / "d" / "test")
    (bad / "d" / "test" / "digit_0").mkdir(parents=True)
    (bad / "d" / "test" / "digit_0" / "only.png").write_text("no")
    with pytest.raises(EdgetlError, match=r"d/test: the test split has no usable images \(1 file\(s\) unusable, "
                                          r"e\.g\. .*only\.png: .*"):
        scan_data(bad / "d")


def test_csv_errors_name_the_rows_to_fix(digits: Path, tmp_path: Path) -> None:
    files = sorted((digits / "train").rglob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_text("not a png")
    rows = "".join(f"{p},{p.parent.name},train\n" for p in files)
    (tmp_path / "t.csv").write_text(rows + f"{broken},digit_0,test\n")
    with pytest.raises(EdgetlError, match=r"t\.csv: the test split has no usable images \(1 file\(s\) unusable, "
                                          r"e\.g\. .*broken\.png: .*\); fix the test rows' files$"):
        scan_data(tmp_path / "t.csv")
    (tmp_path / "v.csv").write_text(rows + f"{broken},digit_0,val\n")
    with pytest.raises(EdgetlError, match=r"v\.csv: the val split has no usable images .*; fix the val rows' files$"):
        scan_data(tmp_path / "v.csv")
    (tmp_path / "c.csv").write_text(rows + f"{files[0]},digit_nine,test\n".replace(str(files[0]), str(broken)))
    with pytest.raises(EdgetlError, match=rf"c\.csv:{len(files) + 1}: class 'digit_nine' is in the test rows but not "
                                          r"in train; add train rows of it or remove it from test$"):
        scan_data(tmp_path / "c.csv")


def test_bad_files_are_listed_once_and_skipped(digits: Path, tmp_path: Path) -> None:
    data = _copy_tree(digits, tmp_path / "d")
    (data / "train" / "digit_0" / "notes.jpg").write_text("not an image")
    good = next((data / "train" / "digit_1").glob("*.png"))
    (data / "train" / "digit_1" / "cut.png").write_bytes(good.read_bytes()[:60])
    split = scan_data(data)
    reasons = {p.name: r for p, r in split.skipped}
    assert set(reasons) == {"notes.jpg", "cut.png"}
    assert "not an image" in reasons["notes.jpg"]
    assert all(s.path.name not in reasons for s in split.train + split.val)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "LA", "I;16"])
def test_any_image_mode_loads_as_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    Image.new(mode, (9, 7)).save(path)
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (9, 7)


def test_non_image_raises_bad_image(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(BadImage):
        load_rgb(tmp_path / "a.png")


def test_empty_class_single_class_and_unknown_val_class_fail_at_start(digits: Path, tmp_path: Path) -> None:
    data = _copy_tree(digits, tmp_path / "a")
    (data / "train" / "digit_x").mkdir()
    with pytest.raises(EdgetlError, match="digit_x: class folder has no images"):
        scan_data(data)
    one = tmp_path / "one"
    shutil.copytree(digits / "train" / "digit_3", one / "digit_3")
    with pytest.raises(EdgetlError, match="only one class"):
        scan_data(one)
    data = _copy_tree(digits, tmp_path / "b")
    shutil.copytree(digits / "val" / "digit_3", data / "val" / "digit_extra")
    with pytest.raises(EdgetlError, match="'digit_extra' is in val but not in train"):
        scan_data(data)


def test_single_folder_split_is_stratified_and_seeded(digits: Path) -> None:
    a = scan_data(digits / "train", val_split=0.25, seed=1)
    b = scan_data(digits / "train", val_split=0.25, seed=1)
    c = scan_data(digits / "train", val_split=0.25, seed=2)
    assert a.val == b.val and a.val != c.val
    assert class_counts(a.val, 10) == [2] * 10
    assert not {s.path for s in a.train} & {s.path for s in a.val}


def test_csv_of_path_label(digits: Path, tmp_path: Path) -> None:
    files = sorted((digits / "train").rglob("*.png"))
    csv = tmp_path / "data.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    split = scan_data(csv, val_split=0.25)
    assert split.classes == CLASSES and len(split.train) + len(split.val) == len(files)
    (tmp_path / "one.csv").write_text("path,label\n" + "".join(f"{p},digit_0\n" for p in files[:4]))
    with pytest.raises(EdgetlError, match="only one class \\(digit_0\\); a classifier needs "
                                          "at least two labels in the CSV"):
        scan_data(tmp_path / "one.csv")
    (tmp_path / "bad.csv").write_text("path,label\nmissing.png,a\n")
    with pytest.raises(EdgetlError, match="do not exist"):
        scan_data(tmp_path / "bad.csv")
    (tmp_path / "latin1.csv").write_bytes("path,label\ncaf\xe9.png,a\n".encode("latin-1"))
    with pytest.raises(EdgetlError, match="latin1.csv: not a UTF-8 text CSV; save it as UTF-8"):
        scan_data(tmp_path / "latin1.csv")
    (tmp_path / "bom.csv").write_text("\ufeffpath,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    assert scan_data(tmp_path / "bom.csv", val_split=0.25).classes == CLASSES  # Excel's UTF-8 with a BOM


def test_a_csv_split_column_says_each_rows_split(digits: Path, tmp_path: Path) -> None:
    rows = [(p, part) for part in ("train", "val", "test") for p in sorted((digits / part).rglob("*.png"))]
    listed = tmp_path / "split.csv"
    listed.write_text("path,label,split\n" + "".join(f"{p},{p.parent.name},{part.upper()}\n" for p, part in rows))
    split, folders = scan_data(listed), scan_data(digits)
    for part in ("train", "val", "test"):
        assert [s.path.name for s in getattr(split, part)] == [s.path.name for s in getattr(folders, part)], part
    assert split.val_split is None
    with pytest.raises(EdgetlError, match="split.csv: --val-split 0.3 would split the train rows and leave the val "
                                          "rows unused"):
        scan_data(listed, val_split=0.3)
    no_val = tmp_path / "no_val.csv"  # train and test rows: val comes off train, test stays whole
    no_val.write_text("".join(line for line in listed.read_text().splitlines(keepends=True) if ",VAL" not in line))
    split = scan_data(no_val, val_split=0.25)
    assert len(split.test) == len(folders.test) and len(split.train) + len(split.val) == len(folders.train)
    assert class_counts(split.val, 10) == [2] * 10 and split.val_split == 0.25


@pytest.mark.parametrize(("text", "message"), [
    ("path,label\n{a},digit_0\n{b},\n", r"x.csv:3: .* has an empty label; give every row its class"),
    ("path,label\n{a},digit_0\n{b},digit_1\n{a},digit_1\n", r"x.csv:4: .* is listed again \(first on line 2\)"),
    ("filename,class\n{a},digit_0\n", r"x.csv:1: 'filename,class' is neither an image row nor a header edgetl "
                                        r"reads; the header, if any, is 'path,label' or 'path,label,split'"),
    ("path,label,split\n{a},digit_0,train\n{b},digit_1\n", r"x.csv:3: expected 'path,label,split'; got .* "
                                                              r"\(2 columns\)"),
    ("{a},digit_0,train\n{b},digit_1,Testing\n", r"x.csv:2: split 'Testing' of .* is not one of train, val, test"),
    ("{a},digit_0,train,x\n", r"x.csv:1: expected 'path,label'; got .* \(4 columns\)"),
    ('path,label\n{a},digit_0\n"{b},digit_1\n{a},digit_2\n', r"x.csv:3: expected 'path,label'; got '.{60}…' "
                                                                 r"\(a stray quote\?\)"),
    ("path,label\n{a},digit_0,train\n", r"x.csv:2: expected 'path,label'; got .* \(3 columns\)"),
])
def test_bad_csv_rows_are_errors_naming_the_line(text: str, message: str, digits: Path, tmp_path: Path) -> None:
    """A row that would train on an empty class, or put one photo in train and val, is refused, not read."""
    a, b = sorted((digits / "train").rglob("*.png"))[:2]
    (tmp_path / "x.csv").write_text(text.format(a=a, b=b))
    with pytest.raises(EdgetlError, match=message):
        scan_data(tmp_path / "x.csv")


def test_hidden_folders_unsupported_formats_and_broken_links(digits: Path, tmp_path: Path) -> None:
    data = _copy_tree(digits / "train", tmp_path / "d")
    hidden = data / "digit_0" / ".thumbnails"
    hidden.mkdir()
    shutil.copy(next((data / "digit_0").glob("*.png")), hidden / "thumb.png")
    (data / "digit_1" / "phone.heic").write_bytes(b"\x00" * 64)
    (data / "digit_2" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    split = scan_data(data, seed=0)
    used = {s.path for s in split.train + split.val}
    assert not any(".thumbnails" in str(p) for p in used)  # hidden folders are left out, like hidden files
    reasons = {p.name: r for p, r in split.skipped}
    assert reasons["phone.heic"] == ".heic is not a format edgetl reads; convert it to JPEG or PNG"
    assert reasons["gone.png"].startswith("broken link")


def test_an_empty_split_names_its_unusable_files_and_a_fix_that_fits(digits: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    _copy_tree(digits / "train", data / "train")
    for c in CLASSES:
        (data / "val" / c).mkdir(parents=True)
        (data / "val" / c / "x.png").write_text("not a picture")
    with pytest.raises(EdgetlError, match=r"d/val: the val split has no usable images \(10 file\(s\) unusable, "
                                          r"e.g. .*/x.png: not an image\); add images to .*d/val$"):
        scan_data(data)


def test_exif_orientation_is_applied_as_viewers_and_deploy_decoders_do(tmp_path: Path) -> None:
    """A phone stores a portrait shot sideways with an orientation tag; the pixels must come out upright."""
    upright = Image.new("RGB", (40, 60), "white")
    ImageDraw.Draw(upright).rectangle((0, 0, 39, 9), fill="red")  # a red band at the top
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote: 60 x 40, band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    img = load_rgb(tmp_path / "phone.jpg")
    assert img.size == (40, 60)
    top, bottom = np.asarray(img)[:8].mean(axis=(0, 1)), np.asarray(img)[-8:].mean(axis=(0, 1))
    assert top[0] > 200 and top[1] < 80 and bottom.min() > 200  # red at the top, white at the bottom


def test_an_empty_file_and_an_oversized_image_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadImage, match=r"empty file \(0 bytes\)"):
        load_rgb(tmp_path / "empty.jpg")
    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 90,000 pixels is then over twice the limit
    with pytest.raises(BadImage, match="too large for PIL's safety limit .* downscale it"):
        load_rgb(tmp_path / "big.png")


def test_eval_folder_maps_onto_model_classes(digits: Path) -> None:
    samples, skipped = scan_eval_folder(digits, ["digit_9", *CLASSES[:9]])
    assert not skipped and {s.label for s in samples if s.path.parent.name == "digit_9"} == {0}
    with pytest.raises(EdgetlError, match="not one of the model's classes"):
        scan_eval_folder(digits, CLASSES[:5])
    assert len(list_image_files(digits / "val")) == 40


def test_loader_order_depends_only_on_seed_and_epoch(digits: Path) -> None:
    split = scan_data(digits)
    ds = ImageDataset(split.train, eval_transform(Preprocess((3, 16, 16))))

    def order(seed: int, epoch: int) -> list[int]:
        loader = make_loader(ds, 16, train=True, seed=seed)
        set_epoch(loader, epoch)
        return [int(y) for _, ys in loader for y in ys]

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4)
    assert sorted(order(0, 3)) == sorted(s.label for s in split.train)  # every image, once


@pytest.mark.parametrize(("n", "batches"), [(9, [4, 4]), (10, [4, 4, 2]), (8, [4, 4])])
def test_train_loader_keeps_every_image_but_a_lone_last_one(digits: Path, n: int, batches: list[int]) -> None:
    """Only a last batch of one is dropped (BatchNorm cannot train on it); small sets keep every image."""
    ds = ImageDataset(scan_data(digits).train[:n], lambda img: torch.zeros(1))
    assert [len(ys) for _, ys in make_loader(ds, 4, train=True, seed=0)] == batches
    assert sum(len(ys) for _, ys in make_loader(ds, 4, train=False)) == n


def test_balanced_sampler_evens_out_classes(digits: Path) -> None:
    split = scan_data(digits)
    skewed = [s for s in split.train if s.label != 0] + [s for s in split.train if s.label == 0] * 10
    ds = ImageDataset(skewed, lambda img: torch.zeros(1))
    loader = make_loader(ds, 32, train=True, seed=0, balanced=True)
    labels = []
    for epoch in range(10):
        set_epoch(loader, epoch)
        labels += [int(y) for _, ys in loader for y in ys]
    share0 = labels.count(0) / len(labels)
    assert 0.05 < share0 < 0.16  # uniform is 0.1; unbalanced it would be ~0.53


@pytest.mark.skipif(not HYMENOPTERA.exists(), reason=f"real photos not found at {HYMENOPTERA}")
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])  # the card's, not a default
def test_eval_preprocessing_matches_timm_on_real_photos(interpolation: str) -> None:
    from timm.data import create_transform

    pre = Preprocess((3, 224, 224), (0.5,) * 3, (0.5,) * 3, interpolation, 0.875)  # tf_efficientnet_lite0's but one
    timm_t = create_transform(input_size=pre.input_size, interpolation=pre.interpolation, mean=pre.mean,
                              std=pre.std, crop_pct=pre.crop_pct)
    files = sorted((HYMENOPTERA / "val").rglob("*.jpg"))[::15]
    for path in files:
        img = load_rgb(path)
        np.testing.assert_array_equal(eval_array(img, pre), timm_t(img).numpy())


@pytest.mark.skipif(not HYMENOPTERA.exists(), reason=f"real photos not found at {HYMENOPTERA}")
@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
def test_every_crop_mode_matches_timm_pixel_for_pixel(crop_mode: str) -> None:
    from timm.data import create_transform

    rng = np.random.default_rng(0)
    tall, wide = (Image.fromarray(rng.integers(0, 256, hwc, dtype=np.uint8)) for hwc in [(300, 90, 3), (60, 400, 3)])
    images = [load_rgb(p) for p in sorted((HYMENOPTERA / "val").rglob("*.jpg"))[::40]] + [tall, wide]
    for crop_pct in (0.875, 1.0, 1.15):  # 1.15 > 1: the resized image is smaller than the crop and gets padded
        pre = Preprocess((3, 96, 96), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "bicubic", crop_pct, crop_mode)
        timm_t = create_transform(input_size=pre.input_size, interpolation=pre.interpolation, mean=pre.mean,
                                  std=pre.std, crop_pct=crop_pct, crop_mode=crop_mode)
        for img in images:
            np.testing.assert_array_equal(eval_array(img, pre), timm_t(img).numpy())
    squash, center = (eval_array(wide, Preprocess((3, 96, 96), crop_pct=1.0, crop_mode=mode))
                      for mode in ("squash", "center"))
    assert np.abs(squash - center).mean() > 0.1  # the modes really differ on a wide image



@pytest.mark.parametrize("key", ["input_size", "mean", "std", "interpolation", "crop_pct"])
def test_a_card_missing_any_preprocessing_key_is_refused(key: str) -> None:
    """A default standing in for a lost key would deploy with preprocessing the model never saw."""
    data = ModelCard("resnet18", ["a", "b"], Preprocess(interpolation="bilinear")).to_dict()
    del data["preprocess"][key]
    with pytest.raises(EdgetlError, match=f"preprocessing lacks {key}"):
        ModelCard.from_dict(data)

def test_crop_mode_comes_from_the_weights_config_and_travels_in_the_card() -> None:
    from edgetl.models.factory import card_for, default_preprocess

    assert default_preprocess("convnext_tiny.fb_in22k_ft_in1k_384").crop_mode == "squash"  # timm's config, offline
    assert default_preprocess("resnet18").crop_mode == "center"
    card = card_for("convnext_tiny.fb_in22k_ft_in1k_384", ["a", "b"], img_size=64)
    assert card.preprocess.crop_mode == "squash" and card.preprocess.size == (64, 64)
    data = card.to_dict()
    assert data["schema"] == 2 and data["preprocess"]["crop_mode"] == "squash"
    assert ModelCard.from_dict(data).preprocess == card.preprocess
    plain = card_for("resnet18", ["a", "b"]).to_dict()  # center: written as before crop modes existed
    assert plain["schema"] == 1 and "crop_mode" not in plain["preprocess"]
    assert ModelCard.from_dict(plain).preprocess.crop_mode == "center"
    with pytest.raises(EdgetlError, match="unknown crop_mode 'letterbox'; choose one of center, squash, border"):
        ModelCard.from_dict({**data, "preprocess": {**data["preprocess"], "crop_mode": "letterbox"}}, source="m.json")


@pytest.mark.skipif(not HYMENOPTERA.exists(), reason=f"real photos not found at {HYMENOPTERA}")
def test_real_set_lists_and_skips_its_placeholder_gif() -> None:
    split = scan_data(HYMENOPTERA)
    assert split.classes == ["ants", "bees"]
    assert [(p.parent.name, p.name) for p, _ in split.skipped] == [("ants", "imageNotFound.gif")]
    assert "placeholder" in split.skipped[0][1]
    assert len(split.train) == 244 and len(split.val) == 153


def _photo(path: Path, seed: int) -> None:
    """Colour noise: as many tones as a photo."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)


def _grey_graphic(path: Path, shade: int = 120) -> None:
    """A light grey card with darker grey lettering, saved as a palette GIF like web stand-ins."""
    img = Image.new("L", (60, 60), 235)
    ImageDraw.Draw(img).text((4, 24), "NOT FOUND", fill=shade)
    img.save(path)


def test_grey_placeholder_among_photos_is_listed_once_and_skipped(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 2)):
        for c, cls in enumerate(("ants", "bees")):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                _photo(tmp_path / split / cls / f"{i}.png", seed=100 * c + 10 * n + i)
    _grey_graphic(tmp_path / "train" / "ants" / "imageNotFound.gif")
    grey = np.random.default_rng(7).integers(0, 256, (30, 30), dtype=np.uint8)  # a black-and-white photo stays
    Image.fromarray(grey).save(tmp_path / "train" / "bees" / "grey-photo.jpg", quality=90)
    split = scan_data(tmp_path)
    assert [(p.name, "placeholder" in r) for p, r in split.skipped] == [("imageNotFound.gif", True)]
    assert len(split.train) == 9 and "imageNotFound.gif" not in {s.path.name for s in split.train}


def test_a_set_of_grey_drawings_keeps_them(tmp_path: Path) -> None:
    """Line art, scans, glyphs: when most of the set is flat grey graphics, they are the data."""
    for c, cls in enumerate(("circle", "text")):
        (tmp_path / cls).mkdir()
        for i in range(5):
            _grey_graphic(tmp_path / cls / f"{i}.gif", shade=40 + 30 * c + i)
    _photo(tmp_path / "text" / "photo.png", seed=1)
    split = scan_data(tmp_path, val_split=0.2)
    assert split.skipped == [] and len(split.train) + len(split.val) == 11


def test_graphics_are_dropped_only_from_a_set_that_is_mostly_photos() -> None:
    """Half graphics is not "mostly photos": all are kept. One in four is a stand-in, and goes."""
    files = [Path(f"{i}.png") for i in range(4)]
    assert drop_placeholders(files, set(files[:2])) == (files, [])
    kept, skipped = drop_placeholders(files, {files[0]})
    assert kept == files[1:] and [p for p, _ in skipped] == [files[0]]


def test_transparent_pixels_load_as_white_as_viewers_show_them(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere, but transparent
    rgba[0, 0, 3] = 255  # except one opaque pixel
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pixels = np.asarray(load_rgb(tmp_path / "a.png"))
    assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[3, 3]) == (255, 255, 255)


def test_calibration_and_parity_leave_the_placeholder_out_as_training_does(hymenoptera: Path) -> None:
    from edgetl.card import Preprocess
    from edgetl.data.labelled import find_labelled
    from edgetl.export.calib import calibration_files, preprocess_files

    ants = hymenoptera / "train" / "ants"
    calib = preprocess_files(calibration_files(ants), Preprocess(input_size=(3, 32, 32)), source=str(ants))
    assert [(p.name, "placeholder" in r) for p, r in calib.skipped] == [("imageNotFound.gif", True)]
    assert len(calib) == len(calibration_files(ants)) - 1 == calib.array.shape[0]
    unlabelled = find_labelled(ants, ["x", "y"], None)  # a flat folder: no labels, same filter
    assert [p.name for p, _ in unlabelled.skipped] == ["imageNotFound.gif"]
    assert "imageNotFound.gif" not in {p.name for p in unlabelled.paths}


def test_val_split_is_for_data_without_val(tmp_path: Path) -> None:
    for part in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(3):
                _photo(tmp_path / part / cls / f"{i}.png", seed=i)
    with pytest.raises(EdgetlError, match="--val-split 0.5 would split train/ and leave this val/ unused"):
        scan_data(tmp_path, val_split=0.5)
    with pytest.raises(EdgetlError, match="--val-split 0 must lie between 0 and 1"):
        scan_data(tmp_path / "train", val_split=0)


def test_sixteen_bit_grey_is_scaled_not_clipped_to_white(tmp_path: Path) -> None:
    grey = np.random.default_rng(0).integers(0, 256, (40, 50), dtype=np.uint8)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit PNG, as scanners write
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = np.asarray(load_rgb(tmp_path / "deep.png"))
    assert rgb.shape == (40, 50, 3) and np.array_equal(rgb[..., 0], grey) and np.array_equal(rgb[..., 2], grey)


def test_a_split_far_above_the_fraction_asked_is_said(digits: Path, tmp_path: Path) -> None:
    """Classes of 2-3 images each keep one for validation: 20% asked, about 40% given."""
    for n, where in ((2, "small"), (3, "small"), (12, "large")):
        for c in ("digit_0", "digit_1", "digit_2"):
            (tmp_path / where / f"{c}_{n}").mkdir(parents=True)
            for src in sorted((digits / "train" / c).glob("*.png"))[:n]:
                shutil.copy(src, tmp_path / where / f"{c}_{n}" / src.name)
    small = scan_data(tmp_path / "small")
    assert len(small.val) == 6 and len(small.train) == 9
    assert any("--val-split 0.2 gave 40% of the images to validation" in w for w in split_warnings(small))
    assert split_warnings(scan_data(tmp_path / "large")) == []  # 36 images: 20% asked, 17% given
    assert split_warnings(scan_data(digits)) == []  # its own val/ folder: nothing was asked


def _text_chunk(text: str) -> object:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("note", text)
    return info


def test_copies_of_training_images_in_val_or_test_are_warned_about(digits: Path, tmp_path: Path) -> None:
    from edgetl.data.overlap import overlap_warnings

    data = _copy_tree(digits, tmp_path / "d")
    assert overlap_warnings(scan_data(data)) == []  # the built-in splits share no image
    seen = sorted((data / "train" / "digit_2").glob("*.png"))
    shutil.copy(seen[0], data / "val" / "digit_2" / "copy.png")
    shutil.copy(seen[1], data / "test" / "digit_7" / "mislabelled.png")  # same bytes, another class: still a copy
    shutil.copy(next((data / "val" / "digit_5").glob("*.png")), data / "test" / "digit_5" / "from_val.png")
    Image.open(seen[2]).save(data / "test" / "digit_2" / "twin.png", pnginfo=_text_chunk("x"))
    Image.open(seen[2]).save(data / "train" / "digit_2" / "twin2.png", pnginfo=_text_chunk("y"))
    split = scan_data(data)  # the twins: same pixels and size, other bytes, so not copies
    assert (data / "test" / "digit_2" / "twin.png").stat().st_size == (data / "train/digit_2/twin2.png").stat().st_size
    assert any(s.path.name == "twin.png" for s in split.test)
    val, test, relabelled = overlap_warnings(split)
    assert val.startswith(f"1 val image(s) are byte-for-byte copies of training images (e.g. "
                          f"{data / 'val' / 'digit_2' / 'copy.png'} = {seen[0]}): val top-1 reads high on them")
    assert test.startswith("1 test image(s) are byte-for-byte copies of training or validation images (e.g. "
                           f"{data / 'test' / 'digit_5' / 'from_val.png'} = ")
    copy = data / "test" / "digit_7" / "mislabelled.png"
    assert relabelled == (f"1 test image(s) are byte-for-byte copies of training or validation images filed under "
                          f"another class (e.g. {copy} = {seen[1]}): the labels disagree; keep the copy with the right "
                          "label and delete the other")
    assert "twin.png" not in test


def test_split_folders_are_found_in_any_case_and_as_valid(digits: Path, tmp_path: Path) -> None:
    data = _copy_tree(digits, tmp_path / "d")
    (data / "train").rename(data / "Train")
    (data / "val").rename(data / "valid")  # Roboflow's name
    split = scan_data(data)
    assert split.folders == {"train": data / "Train", "val": data / "valid", "test": data / "test"}
    assert (len(split.train), len(split.val), len(split.test)) == (80, 40, 40)
    assert split.given == {"train", "val", "test"}
    shutil.copytree(data / "valid", data / "VAL")
    with pytest.raises(EdgetlError, match=r"d/valid: both VAL/ and valid/ look like the val split; keep one$"):
        scan_data(data)
    notes = scan_data(digits / "train").notes  # --data DIR/train: DIR's val/ and test/ would go unused
    assert notes == [f"{digits / 'train'} is a train/ folder: test/ and val/ beside it are not used (val is split off "
                     f"train/); pass --data {digits} to use them"]
    assert split_warnings(scan_data(digits / "train"))[0] == notes[0]


def test_a_csv_split_column_needs_train_rows_and_a_flat_folders_fix_is_the_files(digits: Path,
                                                                                 tmp_path: Path) -> None:
    files = sorted((digits / "val").rglob("*.png"))
    (tmp_path / "n.csv").write_text("".join(f"{p},{p.parent.name},val\n" for p in files))
    with pytest.raises(EdgetlError, match=r"n\.csv: no rows with split train; the split column must give training "
                                          r"some images$"):
        scan_data(tmp_path / "n.csv")
    flat = tmp_path / "flat"
    for name in ("a", "b"):
        (flat / name).mkdir(parents=True)
        for i in range(3):
            (flat / name / f"{i}.png").write_text("not a png")
    with pytest.raises(EdgetlError, match=r"flat: the train split has no usable images \(6 file\(s\) unusable, .*\); "
                                          r"fix or replace the unusable files$"):
        scan_data(flat)
