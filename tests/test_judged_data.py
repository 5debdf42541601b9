"""The images eval, parity, calibrate and export judge a model on, read as training read its data.

A real run on real (digit) images: the val images edgetl split off for it, split folders named the ways
training accepts, a CSV's rows, and a warning when the images scored are ones the model trained on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from edgetl.card import ModelCard
from edgetl.cli import main
from edgetl.data.labelled import find_labelled
from edgetl.data.splits import scan_data
from edgetl.data.trained_on import trained_on
from edgetl.errors import EdgetlError
from edgetl.evaluate import evaluate_artifact
from edgetl.info import describe_artifact


@pytest.fixture(scope="module")
def flat_run(digits_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run on one folder of class folders, which edgetl split into train and val itself (seed 0, 20%)."""
    from edgetl.config import TrainConfig
    from edgetl.train.fit import fit

    flat = tmp_path_factory.mktemp("flat") / "digits"
    shutil.copytree(digits_data / "train", flat)
    cfg = TrainConfig(data=str(flat), out=str(tmp_path_factory.mktemp("flat_run") / "run"), model="test_resnet",
                      img_size=32, epochs=8, lr=1e-2, batch_size=16)  # learns: well above 10% chance
    return flat, fit(cfg, quiet=True).run_dir


def _csv(path: Path, rows: list[tuple[Path, str, str | None]]) -> Path:
    path.write_text("".join(",".join([str(p), label] + ([split] if split else [])) + "\n" for p, label, split in rows))
    return path


def test_the_folder_a_run_split_gives_the_val_images_training_held_out(flat_run: tuple[Path, Path]) -> None:
    from edgetl.export.options import ExportOptions
    from edgetl.export.verify import export_images
    from edgetl.recalibrate import refit_temperature

    flat, run = flat_run
    held = {s.path for s in scan_data(flat).val}  # training's own split, redone
    card = ModelCard.load(run / "model.json")
    found = find_labelled(flat, card.classes, trained=trained_on(run))
    assert set(found.paths) == held and found.warning is None and "val split edgetl made" in found.source
    report = evaluate_artifact(run, flat, device="cpu", progress=False)
    assert report.images == len(held) and report.warning is None
    assert report.top1 == pytest.approx(card.metrics["val_top1"], abs=1e-6) and report.top1 > 30  # training's
    _, images, info = export_images(card, ExportOptions(val_data=flat, quiet=True), trained_on(run))
    assert set(images.paths) == held and "val split edgetl made" in info["source"] and "trained_on" not in info
    refit = refit_temperature(run, flat, device="cpu", write=False, progress=False)
    assert refit.images == len(held) and refit.warning is None
    assert find_labelled(flat, card.classes).paths != found.paths  # another model's view: the whole folder


def test_training_images_among_those_scored_are_counted_and_named(flat_run: tuple[Path, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    flat, run = flat_run
    split = scan_data(flat)
    every = _csv(tmp_path / "all.csv", [(s.path, split.classes[s.label], None) for s in split.train + split.val])
    assert main(["eval", str(run), "--data", str(every)]) == 0
    out = capsys.readouterr().err
    total = len(split.train) + len(split.val)
    assert f"warning: {len(split.train)} of these {total} images are training images of {run}" in out
    assert main(["parity", str(run), str(run), "--data", str(every), "--json", str(tmp_path / "p.json"),
                 "--no-progress"]) == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["trained_on"].startswith(f"{len(split.train)} of these {total}") and doc["images"] == total
    assert main(["eval", str(run), "--data", str(flat), "--split", "test"]) == 2
    assert f"{flat}: no test/ folder (its folders are classes, or hold images); drop --split" in \
        " ".join(capsys.readouterr().err.split())


def test_split_folders_and_csv_rows_read_as_training_reads_them(flat_run: tuple[Path, Path], digits_data: Path,
                                                                tmp_path: Path) -> None:
    _, run = flat_run
    data = tmp_path / "roboflow"
    for src, dst in (("train", "TRAIN"), ("val", "Valid"), ("test", "test")):  # as exported sets name them
        shutil.copytree(digits_data / src, data / dst)

    def scores(d: Path, split: str = "val") -> tuple[int, float]:
        r = evaluate_artifact(run, d, device="cpu", progress=False, split=split)
        return r.images, r.top1

    val, test = scores(digits_data / "val"), scores(digits_data / "test")
    assert scores(data) == val and scores(data, "test") == test
    rows = [(p, p.parent.name, split) for split in ("train", "val", "test")
            for p in sorted((digits_data / split).rglob("*.png"))]
    labelled = _csv(tmp_path / "split.csv", rows)
    assert scores(labelled) == val and scores(labelled, "test") == test
    with pytest.raises(EdgetlError, match=r"split.csv: no test rows \(it has train, val\); pass --split"):
        scores(_csv(tmp_path / "split.csv", [r for r in rows if r[2] != "test"]), "test")
    with pytest.raises(EdgetlError, match="no split column, so no test rows"):
        scores(_csv(tmp_path / "plain.csv", [(p, label, None) for p, label, _ in rows]), "test")
    wrong = [*rows[:3], (rows[3][0], "digit_x", "val")]
    with pytest.raises(EdgetlError, match=r"wrong.csv:4: label 'digit_x' is not a class of the model"):
        scores(_csv(tmp_path / "wrong.csv", wrong))


def test_data_changed_since_training_is_said_by_eval_and_by_a_resume(digits_data: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.config import TrainConfig
    from edgetl.train.fit import fit

    flat = tmp_path / "digits"
    shutil.copytree(digits_data / "train", flat)
    cfg = {"data": str(flat), "out": str(tmp_path / "run"), "model": "test_resnet", "img_size": 32, "epochs": 1,
           "lr": 1e-2, "batch_size": 32}
    run = fit(TrainConfig(**cfg), quiet=True).run_dir
    assert json.loads((run / "split.json").read_text())["train"]["images"] == len(scan_data(flat).train)
    assert evaluate_artifact(run, flat, device="cpu", progress=False).warning is None
    split = scan_data(flat)
    assert describe_artifact(run)["trained_on"] == {
        "run": str(run), "data": str(flat), "images": {"train": len(split.train), "val": len(split.val), "test": 0},
        "split": "edgetl's 0.2 val split, seed 0", "changed": None, "started_from": []}
    for i, src in enumerate(sorted((digits_data / "val" / "digit_3").glob("*.png"))):
        shutil.copy(src, flat / "digit_3" / f"new_{i}.png")  # new photos reshuffle the seeded split
    report = evaluate_artifact(run, flat, device="cpu", progress=False)
    assert report.warning is not None and f"{flat} changed since {run} trained (train: " in report.warning
    assert "some of these images may be ones it trained on" in report.warning
    outside = tmp_path / "outside"  # copies of the whole folder elsewhere: the change reaches them too
    shutil.copytree(flat, outside)
    warning = find_labelled(outside, ModelCard.load(run / "model.json").classes, trained=trained_on(run)).warning
    assert warning is not None and f"{flat} changed since {run} trained" in warning
    assert main(["info", str(run)]) == 0
    assert f"{flat}: edgetl's 0.2 val split, seed 0; {len(split.train)} train, {len(split.val)} val files listed " \
           "when it trained; changed since: train: " in " ".join(capsys.readouterr().out.replace("│", " ").split())
    capsys.readouterr()
    fit(TrainConfig(**{**cfg, "epochs": 2, "resume": str(run)}), quiet=True)
    err = " ".join(capsys.readouterr().err.split())
    assert f"warning: {flat} changed since this run started (train: " in err
    report = evaluate_artifact(run, flat, device="cpu", progress=False)  # its first epoch trained on the old split
    assert report.warning is not None and f"{flat} changed since {run} trained (train: " in report.warning


def test_runs_are_found_from_any_folder_and_through_init(flat_run: tuple[Path, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.config import TrainConfig
    from edgetl.export.source import load_source
    from edgetl.train.fit import fit

    flat, parent = flat_run
    monkeypatch.chdir(flat.parent)  # relative --data, --out and --init, as typed at a prompt
    cfg = TrainConfig(data=flat.name, out="child", model="test_resnet", img_size=32, epochs=1, lr=1e-2,
                      batch_size=32, seed=7, init=os.path.relpath(parent))
    capsys.readouterr()
    child = fit(cfg, quiet=True).run_dir.resolve()
    said = " ".join(capsys.readouterr().err.split())  # the parent trained on some of this run's val images
    assert f"val images are training images of {parent}, whose weights this run starts from" in said
    source = load_source(child, None)[2]
    assert Path(source["path"]).is_absolute()  # the manifest finds the run from anywhere
    monkeypatch.chdir(tmp_path)
    trained = trained_on(child)
    assert trained is not None and trained.data == flat.resolve() and [t.run for t in trained.parents] == [parent]
    assert describe_artifact(child)["trained_on"]["started_from"] == [str(parent)]
    card = ModelCard.load(child / "model.json")
    found = find_labelled(flat, card.classes, trained=trained)
    held = {s.path for s in scan_data(flat, seed=7).val}
    learnt = held & {s.path for s in scan_data(flat).train}  # the parent's seed-0 split trained on these
    assert set(found.paths) == held and learnt
    assert found.warning is not None and found.warning.startswith(
        f"{len(learnt)} of these {len(held)} images are training images of {parent} (a run it started from)")
    train = find_labelled(flat, card.classes, split="train", trained=trained)
    assert len(train.paths) == len(scan_data(flat, seed=7).train) and "train part" in train.source
    assert train.warning is not None and train.warning.startswith(f"{len(train.paths)} of these {len(train.paths)}")
    assert main(["train", "--resume", str(child), "--epochs", "2", "--quiet"]) == 0  # from another folder too
    moved = tmp_path / "moved"  # the run copied with its data: the copy's data is the one beside it
    shutil.copytree(child, moved / "child")
    shutil.copytree(flat, moved / flat.name)
    copy = trained_on(moved / "child")
    assert copy is not None and copy.data == (moved / flat.name).resolve() and copy.changed is None
    with Image.open(next((moved / flat.name / "digit_0").iterdir())) as img:
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(moved / flat.name / "digit_0" / "new.png")
    copy = trained_on(moved / "child")  # the copy changed: alone, the original's files match the record
    assert copy is not None and copy.data == flat.resolve()
    found = find_labelled(moved / flat.name, card.classes, trained=copy)  # but judged on the copy, it is the data
    assert "val split edgetl made" in found.source and found.warning is not None
    assert found.warning.startswith(f"{(moved / flat.name).resolve()} changed since {(moved / 'child').resolve()} "
                                    "trained (train: ")
    alone = tmp_path / "alone"  # the run copied alone, beside a folder of the same name holding other photos
    shutil.copytree(child, alone / "child")
    shutil.copytree(flat / "digit_0", alone / flat.name / "digit_0")
    shutil.copytree(flat / "digit_1", alone / flat.name / "digit_1")
    found = trained_on(alone / "child")
    assert found is not None and found.data == flat.resolve()  # the files it trained on, not the name
    look_alikes = tmp_path / "look_alikes"  # copies of its training photos under other names: still learnt
    look_alikes.mkdir()
    for s in scan_data(flat, seed=7).train[:4]:
        shutil.copy(s.path, look_alikes / f"{s.path.parent.name}_{s.path.name}")
    warning = trained.overlap(sorted(look_alikes.iterdir()))
    assert warning is not None and warning.startswith("4 of these 4 images are training images (4 of them "
                                                      f"byte-for-byte copies) of {child}")


def test_export_reads_a_csv_and_names_no_flag_it_lacks(flat_run: tuple[Path, Path], digits_data: Path,
                                                       tmp_path: Path) -> None:
    from edgetl.export.calib import labelled_images
    from edgetl.export.options import ExportOptions
    from edgetl.export.verify import export_images

    _, run = flat_run
    card = ModelCard.load(run / "model.json")
    rows = [(p, p.parent.name, split) for split in ("train", "val")
            for p in sorted((digits_data / split).rglob("*.png"))]
    options = ExportOptions(val_data=_csv(tmp_path / "rows.csv", rows), quiet=True)
    options.validate()
    _, images, info = export_images(card, options, trained_on(run))
    assert len(images) == len([r for r in rows if r[2] == "val"]) and info["source"].endswith("rows.csv (val rows)")
    no_val = tmp_path / "no_val"
    for split in ("train", "test"):
        shutil.copytree(digits_data / split, no_val / split)
    with pytest.raises(EdgetlError, match=r"no val/ folder \(it has test/, train/\); pass the folder of val images$"):
        labelled_images(no_val, card.classes, card.preprocess)  # export has no --split to suggest


def test_loose_images_in_train_and_test_folders_are_unlabelled_not_splits(digits_data: Path, tmp_path: Path) -> None:
    for split, digit in (("train", "digit_0"), ("test", "digit_1")):
        shutil.copytree(digits_data / "train" / digit, tmp_path / "loose" / split)
    found = find_labelled(tmp_path / "loose", [f"digit_{i}" for i in range(10)])
    assert found.labels is None and len(found.paths) == len(list((tmp_path / "loose").rglob("*.png")))


def test_a_changed_test_folder_is_no_change_to_what_val_scores(digits_data: Path, tmp_path: Path) -> None:
    from edgetl.config import TrainConfig
    from edgetl.train.fit import fit

    data = tmp_path / "digits"
    shutil.copytree(digits_data, data)
    run = fit(TrainConfig(data=str(data), out=str(tmp_path / "run"), model="test_resnet", img_size=32, epochs=1,
                          batch_size=32), quiet=True).run_dir
    with Image.open(sorted((data / "test" / "digit_0").glob("*.png"))[0]) as img:
        new = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # a new photo: bytes no other file has
    new.save(data / "test" / "digit_0" / "new.png")
    assert evaluate_artifact(run, data, device="cpu", progress=False).warning is None
    (data / "test" / "digit_0" / "new.png").unlink()
    new.save(data / "train" / "digit_0" / "new.png")  # new photos for training: val is still held out
    assert evaluate_artifact(run, data, device="cpu", progress=False).warning is None
    shutil.move(sorted((data / "train" / "digit_1").glob("*.png"))[0], data / "val" / "digit_1")
    warning = evaluate_artifact(run, data, device="cpu", progress=False).warning  # a training photo moved to val
    assert warning is not None and f"{data} changed since {run} trained (train: " in warning
    assert "photos moved between its splits may be among these" in warning
    assert evaluate_artifact(run, data, device="cpu", progress=False, split="test").warning is None  # test: as was
    loose = tmp_path / "loose"
    shutil.copytree(data / "test" / "digit_0", loose / "test")
    with pytest.raises(EdgetlError, match=f"{loose / 'test'}: no class folders, so no labels; pass --data"):
        find_labelled(loose, ["digit_0"], split="test")


def test_a_csv_for_the_imagenet_head_is_labelled_by_imagenet_names(hymenoptera: Path, tmp_path: Path) -> None:
    from edgetl.data.imagenet import IMAGENET_CLASSES

    photos = [p for cls in ("ants", "bees") for p in sorted((hymenoptera / "val" / cls).glob("*.jpg"))[:3]]
    rows = _csv(tmp_path / "photos.csv", [(p, p.parent.name, None) for p in photos])
    found = find_labelled(rows, IMAGENET_CLASSES)
    assert found.paths == photos and [IMAGENET_CLASSES[i] for i in found.labels or []] == \
        ["imagenet_310"] * 3 + ["imagenet_309"] * 3  # ant, bee: as parity maps ants/ and bees/ folders
