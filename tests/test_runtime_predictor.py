"""Predictor: the exact training preprocessing from the artifact's card, top-k answers on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgetl.calibration import softmax
from edgetl.card import ModelCard
from edgetl.data.images import load_rgb
from edgetl.data.transforms import eval_transform
from edgetl.errors import EdgetlError
from edgetl.runtime import load
from edgetl.runtime.predictor import Predictor

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _photos(root: Path, n: int = 4) -> list[Path]:
    half = n // 2
    return sorted((root / "val" / "ants").glob("*.jpg"))[:half] + sorted((root / "val" / "bees").glob("*.jpg"))[:half]


def test_predictor_tensor_equals_training_and_timm_transforms(tiny_onnx: Path, hymenoptera: Path) -> None:
    from timm.data import create_transform

    photos = _photos(hymenoptera)
    with load(tiny_onnx) as runner:
        pre = runner.card.preprocess
        got = Predictor(runner).preprocess(photos)
    training = torch.stack([eval_transform(pre)(load_rgb(p)) for p in photos]).numpy()
    np.testing.assert_array_equal(got, training)  # the very function validation used in training
    timm_eval = create_transform(input_size=pre.input_size, interpolation=pre.interpolation, mean=pre.mean,
                                 std=pre.std, crop_pct=pre.crop_pct, is_training=False)
    reference = torch.stack([timm_eval(load_rgb(p)) for p in photos]).numpy()
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_predict_topk_matches_torch_model(tiny_run_dir: Path, tiny_onnx: Path, hymenoptera: Path) -> None:
    photos = _photos(hymenoptera)
    with load(tiny_onnx) as runner, load(tiny_run_dir, device="cpu") as ref:
        preds = Predictor(runner, batch_size=3).predict(photos, topk=5)
        logits = ref.infer(Predictor(ref).preprocess(photos))
    probs = softmax(logits.astype(np.float64))
    assert [p.source for p in preds] == [str(p) for p in photos]
    for pred, row in zip(preds, probs, strict=True):
        assert len(pred.top) == 2  # top-k capped at the number of classes
        assert pred.label == ["ants", "bees"][int(row.argmax())]
        assert pred.top[0][1] == pytest.approx(row.max(), abs=1e-4)
        assert pred.top[0][1] >= pred.top[1][1]
        assert sum(prob for _, prob in pred.top) == pytest.approx(1.0, abs=1e-5)


def test_the_cards_temperature_travels_to_the_onnx_file_and_scales_its_probabilities(
        tiny_run_dir: Path, hymenoptera: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from edgetl.cli import main
    from edgetl.export.onnx import onnx_from_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    card = ModelCard.load(run / "model.json")
    card.temperature = 0.25
    card.save(run / "model.json")
    onnx_path = onnx_from_checkpoint(run, tmp_path / "model.onnx")
    photos = _photos(hymenoptera)
    for artifact in (run, onnx_path):
        with load(artifact, device="cpu") as runner:
            assert runner.card.temperature == 0.25
            predictor = Predictor(runner)
            logits, preds = predictor.logits(photos), predictor.predict(photos)
        for pred, row in zip(preds, softmax(logits, 0.25), strict=True):
            assert pred.top[0][1] == pytest.approx(row.max(), abs=1e-6)
        assert main(["info", str(artifact)]) == 0
        assert "softmax(logits / 0.25)" in capsys.readouterr().out
    photo = str(photos[0])
    for artifact, said in ((tiny_run_dir, False), (run, True)):  # the table says the temperature when it is not 1
        assert main(["predict", str(artifact), photo]) == 0
        said_t = "probabilities at temperature 0.25 (fitted on the validation set in training)"
        assert (said_t in " ".join(capsys.readouterr().out.split())) == said
    from edgetl.parity import compare_artifacts

    (parity,) = compare_artifacts(run, [onnx_path], hymenoptera / "val", limit=8, progress=False).candidates
    assert parity.stats.temperature == 0.25 and parity.passed  # parity states probabilities as predict does



def test_predict_files_decodes_each_file_once_and_skips_the_unreadable(tiny_onnx: Path, hymenoptera: Path,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgetl predict` answers the files that decode and names the others, reading each file once."""
    import edgetl.runtime.predictor as predictor_module

    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    photos = _photos(hymenoptera, 5)
    files = [photos[0], bad, *photos[1:]]
    decoded: list[str] = []
    real = predictor_module.decode_rgb

    def counted(path: str | Path, draft: int | None = None) -> Image.Image:
        decoded.append(str(path))
        return real(path, draft)

    with load(tiny_onnx) as runner:
        want = Predictor(runner).predict(photos, topk=1)
        monkeypatch.setattr(predictor_module, "decode_rgb", counted)
        got, skipped = Predictor(runner, batch_size=3).predict_files(files, topk=1)
    assert sorted(decoded) == sorted(map(str, files))  # once each, the bad one included
    assert skipped == [(str(bad), "not an image")]
    assert [p.source for p in got] == [str(p) for p in photos]
    assert [p.top[0][0] for p in got] == [p.top[0][0] for p in want]
    np.testing.assert_allclose([p.top[0][1] for p in got], [p.top[0][1] for p in want], rtol=1e-6)

def test_predict_accepts_pil_images_and_arrays(tiny_onnx: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    with load(tiny_onnx) as runner:
        predictor = Predictor(runner)
        from_array = predictor.predict(pixels, topk=1)
        from_pil = predictor.predict([Image.fromarray(pixels)], topk=1)
        assert from_array[0].top == from_pil[0].top
        with pytest.raises(EdgetlError, match="expected HxWx3 uint8"):
            predictor.predict(pixels.astype(np.float32))


def test_predict_bad_file_names_it(tiny_onnx: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with load(tiny_onnx) as runner, pytest.raises(EdgetlError, match="broken.jpg"):
        Predictor(runner).predict([bad])


def test_a_transparent_image_reads_the_same_from_memory_as_from_its_file(tiny_onnx: Path, tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (80, 100, 4), dtype=np.uint8)
    rgba[:40, :, 3] = 0  # half of it transparent: shown, and trained on, as white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    with load(tiny_onnx) as runner:
        predictor = Predictor(runner)
        from_file = predictor.preprocess([tmp_path / "clear.png"])
        np.testing.assert_array_equal(predictor.preprocess([Image.open(tmp_path / "clear.png")]), from_file)
        with pytest.raises(EdgetlError, match="topk 0 must be at least 1"):
            predictor.predict(tmp_path / "clear.png", topk=0)


def test_imagenet_head_classes_say_what_they_are() -> None:
    from edgetl.data.imagenet import imagenet_description

    assert imagenet_description("imagenet_310") == "ant, emmet, pismire"
    assert imagenet_description("imagenet_1000") is None and imagenet_description("ants") is None
