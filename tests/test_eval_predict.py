"""`edgetl eval` and `edgetl predict` on a trained run: metrics that agree with each other and with the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import edgetl.cli as cli
from edgetl.checkpoint import load_model
from edgetl.cli.eval import print_report
from edgetl.config import TrainConfig
from edgetl.data.images import load_rgb
from edgetl.data.transforms import eval_array
from edgetl.evaluate import report_from_logits
from edgetl.train.fit import fit

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run_dir(digits_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evalrun") / "run"
    fit(TrainConfig(data=str(digits_data), out=str(out), model="test_resnet", img_size=32, epochs=3, lr=1e-2,
                    batch_size=16), quiet=True)
    return out


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", ("eval", "predict"))


def test_eval_writes_consistent_report(run_dir: Path, digits_data: Path, commands: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["eval", str(run_dir), "--data", str(digits_data / "val"), "--worst", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((run_dir / "eval.json").read_text())
    assert printed == saved and (run_dir / "confusion.png").stat().st_size > 1000
    assert (run_dir / "reliability.png").stat().st_size > 1000
    bins = saved["calibration"]["reliability"]  # the diagram's bars: every image in one, each as scored
    assert sum(b["images"] for b in bins) == 60
    assert sum(b["accuracy"] * b["images"] for b in bins) == pytest.approx(saved["top1"] * 60 / 100)
    cm = np.asarray(saved["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == saved["images"] == 60
    assert saved["top1"] == pytest.approx(100.0 * np.trace(cm) / cm.sum())
    assert saved["top5"] >= saved["top1"]
    for i, c in enumerate(saved["per_class"]):
        assert c["support"] == cm[i].sum()
        assert c["recall"] == pytest.approx(cm[i, i] / cm[i].sum())
    worst = saved["worst"]
    assert len(worst) == min(5, 60 - np.trace(cm))
    assert all(m["true"] != m["predicted"] for m in worst)
    assert [m["confidence"] for m in worst] == sorted((m["confidence"] for m in worst), reverse=True)
    # the accuracy agrees with the best epoch recorded by training (same eval preprocessing)
    card = json.loads((run_dir / "model.json").read_text())
    assert saved["top1"] == pytest.approx(card["metrics"]["val_top1"])
    assert saved["calibration"]["temperature"] == card["temperature"]


def test_the_temperature_training_fitted_is_the_one_the_deployed_logits_give(run_dir: Path, digits_data: Path,
                                                                            tmp_path: Path) -> None:
    """Refit on the val images through an exported ONNX file and the Predictor (numpy preprocessing, ONNX
    Runtime): the same temperature, and the same ECE before it, as training recorded from its own loop."""
    from edgetl import calibration
    from edgetl.export.onnx import onnx_from_checkpoint
    from edgetl.runtime.loader import deployed_runner
    from edgetl.runtime.predictor import Predictor

    onnx_path = onnx_from_checkpoint(run_dir, tmp_path / "model.onnx")
    paths = sorted((digits_data / "val").glob("*/*.png"))
    with deployed_runner(onnx_path) as runner:
        card = runner.card
        logits = Predictor(runner).logits(paths)
    labels = np.array([card.classes.index(p.parent.name) for p in paths])
    fitted = calibration.choose_temperature(logits, labels)
    assert card.temperature == pytest.approx(fitted.temperature, rel=1e-3)  # fitted, or kept at 1 for the same reason
    assert (fitted.kept is None) == ("val_ece_calibrated" in card.metrics)
    assert card.metrics["val_ece"] == pytest.approx(calibration.calibration_of_logits(logits, labels)["ece"], abs=1e-4)
    assert calibration.nll(logits, labels, card.temperature) <= calibration.nll(logits, labels, 1.0)


def test_predict_json_matches_the_model(run_dir: Path, digits_data: Path, commands: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    images = sorted((digits_data / "val" / "digit_3").glob("*.png"))[:3]
    assert cli.main(["predict", str(run_dir), *map(str, images), "--topk", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    out = printed["predictions"]
    model, card = load_model(run_dir)
    assert printed["temperature"] == card.temperature  # the probabilities are those of logits / temperature
    batch = torch.from_numpy(np.stack([eval_array(load_rgb(p), card.preprocess) for p in images]))
    with torch.inference_mode():
        probs = torch.softmax(model(batch) / card.temperature, dim=1)
    for pred, p in zip(out, probs, strict=True):
        assert len(pred["top"]) == 3
        top = p.topk(3)
        assert [t["class"] for t in pred["top"]] == [card.classes[i] for i in top.indices.tolist()]
        assert [t["prob"] for t in pred["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_predict_into_a_closed_pipe_exits_without_a_traceback(run_dir: Path, digits_data: Path) -> None:
    """`edgetl predict --json | head`: head leaves before edgetl writes; that is no error of the user's."""
    import subprocess
    import sys

    images = sorted((digits_data / "val" / "digit_3").glob("*.png"))[:3]
    proc = subprocess.Popen([sys.executable, "-m", "edgetl", "predict", str(run_dir), *map(str, images), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before edgetl has loaded
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


def test_a_broken_pipe_other_than_stdout_is_a_real_error(commands: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only stdout's reader leaving is quiet: a subprocess that died under a command is reported."""
    import subprocess
    import sys

    import edgetl.cli.eval as eval_cli

    def feeds_a_dead_process(args: object) -> int:
        proc = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
        proc.wait()
        assert proc.stdin is not None
        proc.stdin.write(b"x" * 2**20)  # the reader is gone
        proc.stdin.flush()
        return 0

    monkeypatch.setattr(eval_cli, "run", feeds_a_dead_process)
    with pytest.raises(BrokenPipeError):
        cli.main(["eval", "run", "--data", "d"])


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files edgetl decodes from now on, wherever it decodes them."""
    import edgetl.data.images
    import edgetl.runtime.predictor

    decoded: list[str] = []
    real = edgetl.data.images.decode_rgb

    def counted(path: Any, draft: int | None = None) -> Any:
        decoded.append(str(path))
        return real(path, draft)

    for module in (edgetl.data.images, edgetl.runtime.predictor):
        monkeypatch.setattr(module, "decode_rgb", counted)
    return decoded


def test_predict_table_and_bad_image(run_dir: Path, tmp_path: Path, digits_data: Path, commands: None,
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    image = next((digits_data / "val" / "digit_0").glob("*.png"))
    assert cli.main(["predict", str(run_dir), str(image), "--topk", "2"]) == 0
    assert "digit_" in capsys.readouterr().out
    (tmp_path / "bad.jpg").write_text("not an image")
    assert cli.main(["predict", str(run_dir), str(tmp_path / "bad.jpg")]) == 2
    assert "bad.jpg" in capsys.readouterr().err
    # a bad file among good ones: the good ones are still answered, the bad one named, exit 2; each file read once
    decoded = _count_decodes(monkeypatch)
    assert cli.main(["predict", str(run_dir), str(tmp_path / "bad.jpg"), str(image), "--json"]) == 2
    assert sorted(decoded) == sorted([str(tmp_path / "bad.jpg"), str(image)])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert [p["source"] for p in doc["predictions"]] == [str(image)]
    assert doc["skipped"][0]["path"] == str(tmp_path / "bad.jpg") and "bad.jpg" in captured.err
    # a typo among good paths: the others are answered and the typo listed (exit 2); a folder stops at once
    assert cli.main(["predict", str(run_dir), str(image), str(tmp_path / "typo.jpg"), "--json"]) == 2
    captured = capsys.readouterr()
    assert [p["source"] for p in json.loads(captured.out)["predictions"]] == [str(image)]
    assert "typo.jpg: no such file; check the path" in captured.err
    assert cli.main(["predict", str(run_dir), str(image), str(digits_data / "val")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "val: a folder; pass image files" in err and err.count("\n") == 1


def test_report_from_logits_by_hand() -> None:
    logits = np.array([[3.0, 0.0], [0.0, 3.0], [2.0, 0.0], [5.0, 0.0]])
    labels = np.array([0, 1, 1, 1])
    report = report_from_logits(logits, labels, ["a", "b"], ["p0", "p1", "p2", "p3"])
    assert report.top1 == 50.0 and report.top5 is None
    assert report.confusion == [[1, 0], [2, 1]]
    assert report.per_class[0].precision == pytest.approx(1 / 3) and report.per_class[1].recall == pytest.approx(1 / 3)
    assert [m.path for m in report.worst] == ["p3", "p2"]  # most confident mistake first
    assert report.macro == pytest.approx({"precision": (1 / 3 + 1) / 2, "recall": (1 + 1 / 3) / 2,
                                          "f1": (0.5 + 0.5) / 2, "classes": 2})
    five = report_from_logits(np.eye(5)[::-1].copy(), np.arange(5), list("abcde"), list("vwxyz"))
    assert five.top1 == 20.0 and five.top5 is None  # with 5 classes every top-5 holds the label: not a figure
    ranked = np.tile(np.arange(6.0)[::-1], (6, 1))  # every image ranks a > b > … > f
    six = report_from_logits(ranked, np.arange(6), list("abcdef"), list("uvwxyz"))
    assert six.top5 == pytest.approx(100 * 5 / 6)  # only the image of f misses its top 5



def test_calibration_by_hand_and_the_note_on_misleading_probabilities() -> None:
    from edgetl.calibration import calibration, calibration_note

    cal = calibration(np.array([0.95, 0.95, 0.55, 0.55]), np.array([True, True, True, False]))
    # two bins: (1 - 0.95) and (0.55 - 0.5), each half the images
    bins = cal.pop("reliability")
    assert cal == pytest.approx({"mean_confidence": 0.75, "accuracy": 0.75, "ece": 0.05, "bins": 15})
    expected = [{"lo": 8 / 15, "hi": 9 / 15, "images": 2, "confidence": 0.55, "accuracy": 0.5},
                {"lo": 14 / 15, "hi": 1.0, "images": 2, "confidence": 0.95, "accuracy": 1.0}]
    assert len(bins) == 2 and all(got == pytest.approx(want) for got, want in zip(bins, expected, strict=True))
    assert calibration_note(cal) is None  # as sure as it is right
    shy = calibration(np.full(4, 0.6), np.ones(4, bool))  # a briefly trained head: right, but says 0.6
    assert shy["ece"] == pytest.approx(0.4) and "understate" in (calibration_note(shy) or "")
    bold = calibration(np.full(4, 0.99), np.array([True, False, True, False]))
    assert "overstate" in (calibration_note(bold) or "")
    report = report_from_logits(np.array([[3.0, 0.0], [0.0, 3.0]]), np.array([0, 1]), ["a", "b"], ["p", "q"])
    assert report.calibration["mean_confidence"] == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert report.to_dict()["calibration"] == report.calibration


def test_eval_states_probabilities_at_the_cards_temperature(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # one line per sentence
    logits, labels = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.0]]), np.array([0, 1, 1])
    report = report_from_logits(logits, labels, ["a", "b"], ["p", "q", "r"], temperature=0.5)
    sure, unsure = 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-1.2))  # logits / 0.5
    assert report.calibration["mean_confidence"] == pytest.approx((2 * sure + unsure) / 3)
    assert report.calibration["temperature"] == 0.5 and report.worst[0].confidence == pytest.approx(unsure)
    assert report.loss == pytest.approx(report_from_logits(logits, labels, ["a", "b"], ["p", "q", "r"]).loss)
    print_report(report)
    out = capsys.readouterr().out
    assert f"probabilities: mean top-1 {(2 * sure + unsure) / 3:.3f} against accuracy 0.667" in out
    assert "(temperature 0.5)" in out and "its temperature (0.5) was fitted on other images" in out
    low, high = report.top1_ci or (0, 0)
    assert f"3 images, top-1 66.67% (95% CI {low:.1f}–{high:.1f}), loss" in out and 20 < low < 30 < 90 < high < 95

def test_many_classes_give_a_readable_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """300 classes: the terminal shows the weakest 30, the plot indices and the JSON a line per matrix row."""
    from edgetl.evaluate import save_report

    k, rng = 300, np.random.default_rng(0)
    labels = np.repeat(np.arange(k), 2)
    logits = rng.standard_normal((2 * k, k)) + 4 * np.eye(k)[labels] * (np.arange(2 * k) % 7 != 0)[:, None]
    names = [f"species {i:03d} " + "x" * 60 + f" {i}" for i in range(k)]  # long names that differ at the end
    report = report_from_logits(logits, labels, names, [f"img{i}.jpg" for i in range(2 * k)])
    print_report(report)
    out = capsys.readouterr().out
    weakest = report.weakest(30)
    rest = [c for c in report.per_class if c not in weakest]
    assert "the 30 weakest of 300 classes" in out and max(c.f1 for c in weakest) <= min(c.f1 for c in rest)
    assert min(c.f1 for c in weakest) < max(c.f1 for c in rest)  # the data spread them: the choice mattered
    assert sum(line.count("species") for line in out.splitlines()) == 30 + len(report.worst) * 2
    assert all(f"x {c.name.rsplit(' ', 1)[1]}" in out.replace("\n", "") for c in weakest[:3])  # wrapped, not cut
    json_path, png_path, _ = save_report(report, tmp_path)
    # class indices, not 600 tick labels (a minute to draw at 1000 classes), on a 12-inch figure at 100 dpi
    with Image.open(png_path) as png:
        assert png.size == (1200, 1200)
    saved = json.loads(json_path.read_text())
    assert len(json_path.read_text().splitlines()) < 3000 and np.asarray(saved["confusion"]).shape == (k, k)
    assert png_path.stat().st_size > 0


def test_worst_mistakes_table_shows_whole_file_names(capsys: pytest.CaptureFixture[str]) -> None:
    """On an 80-column terminal a long data root used to cut every file name to '…'."""
    root = "/data/" + "deeply/nested/" * 5 + "hymenoptera"
    names = [f"val/ants/{1000000 + i}_4ab37dce07.jpg" for i in range(3)]
    logits = np.array([[0.0, 4.0], [0.0, 3.0], [0.0, 2.0]])
    report = report_from_logits(logits, np.array([0, 0, 0]), ["ants", "bees"], [f"{root}/{n}" for n in names],
                                data=root)
    print_report(report)
    out = capsys.readouterr().out
    assert all(name in out for name in names) and "…" not in out


def test_eval_of_an_artifact_file_names_its_reports_after_it(tiny_onnx: Path, hymenoptera: Path, tmp_path: Path,
                                                              commands: None) -> None:
    out = tmp_path / "export"
    assert cli.main(["eval", str(tiny_onnx), "--data", str(hymenoptera / "val"), "--out", str(out), "--json"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.confusion.png", "model.eval.json", "model.reliability.png"]
    assert json.loads((out / "model.eval.json").read_text())["images"] == 153


def test_a_card_without_its_preprocessing_and_a_folder_of_no_images_are_one_line_errors(
        run_dir: Path, digits_data: Path, tmp_path: Path, commands: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    card = json.loads((broken / "model.json").read_text())
    del card["preprocess"]["mean"], card["preprocess"]["std"]  # defaults would silently deploy ImageNet's
    (broken / "model.json").write_text(json.dumps(card))
    assert cli.main(["predict", str(broken), str(next(digits_data.rglob("*.png")))]) == 2
    assert "preprocessing lacks mean, std" in capsys.readouterr().err
    junk = tmp_path / "junk" / "digit_0"
    junk.mkdir(parents=True)
    (junk / "x.jpg").write_text("not a picture")
    assert cli.main(["eval", str(run_dir), "--data", str(junk.parent)]) == 2
    err = capsys.readouterr().err
    assert "none of its 1 file(s) is a usable image" in err and "x.jpg: not an image" in err and err.count("\n") == 1


def test_a_class_name_with_a_bar_keeps_its_markdown_table_row(tmp_path: Path) -> None:
    from edgetl.report import Section, Table, to_markdown

    md = to_markdown("r", [Section("s", tables=[Table(["class", "F1"], [["cats | dogs", "0.5"], ["**total**", "1"]])])],
                     tmp_path)
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows[1] == "| cats \\| dogs | 0.5 |" and rows[2] == "| **total** | 1 |"  # 2 cells each, as the header


def test_an_imagenet_head_is_scored_on_folders_named_the_imagenet_way(hymenoptera: Path, tmp_path: Path) -> None:
    """As parity reads them: ants/ and bees/ are ImageNet classes 310 and 309 for Lite0's own 1000-class head."""
    from edgetl.checkpoint import save_checkpoint
    from edgetl.evaluate import evaluate_artifact
    from edgetl.models.weights import imagenet_lite_model

    model, card = imagenet_lite_model("efficientnet_lite0")
    save_checkpoint(tmp_path / "imagenet", "best", model, card)
    report = evaluate_artifact(tmp_path / "imagenet", hymenoptera / "val", device="cpu", progress=False)
    assert report.class_map == {"ants": "imagenet_310", "bees": "imagenet_309"} and report.images == 153
    assert report.top1 == pytest.approx(84.97, abs=0.01)  # benchmarks/results/cpu/*_parity.json: the same photos
    assert report.macro["classes"] == 2 and len(report.weakest(30)) == 2


@pytest.mark.parametrize(("right", "images", "lo", "hi"), [(5, 10, 23.66, 76.34), (0, 10, 0.0, 27.75),
                                                            (10, 10, 72.25, 100.0), (281, 330, None, None)])
def test_top1_interval_is_wilsons(right: int, images: int, lo: float | None, hi: float | None) -> None:
    from edgetl.evaluate import wilson_interval

    got = wilson_interval(right, images)  # textbook values where given
    assert got is not None and (lo is None or got == pytest.approx((lo, hi), abs=0.06))
    assert got[0] < 100 * right / images < got[1] or right in (0, images)
    p = right / images  # each end is where the observed rate lies exactly z standard errors from it
    for end in got:
        q = end / 100
        if 1e-6 < q < 1 - 1e-6:  # not a bound clipped to 0 or 100
            assert abs(p - q) == pytest.approx(1.96 * (q * (1 - q) / images) ** 0.5, rel=1e-9)
    assert wilson_interval(0, 0) is None


def test_eval_of_a_train_and_test_folder_points_at_the_test_set(run_dir: Path, digits_data: Path, tmp_path: Path,
                                                                 commands: None,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d"
    shutil.copytree(digits_data, data, ignore=shutil.ignore_patterns("val"))
    assert cli.main(["eval", str(run_dir), "--data", str(data)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no val/ folder (it has test/, train/); pass --split test to use test/" in err
