"""`edgetl info` on each kind of artifact, from the files alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from edgetl.card import ModelCard
from edgetl.cli import main
from edgetl.info import describe_artifact


def test_info_on_run_dir(tiny_run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = describe_artifact(tiny_run_dir)
    assert info["backend"] == "torch" and info["precision"] == "fp32"
    assert info["classes"] == ["ants", "bees"]
    from edgetl.checkpoint import load_model

    model, _ = load_model(tiny_run_dir)
    assert info["parameters"] == sum(p.numel() for p in model.parameters())  # BatchNorm's buffers not counted
    assert info["inputs"][0]["shape"] == ["N", 3, 64, 64]
    assert main(["info", str(tiny_run_dir)]) == 0
    out = capsys.readouterr().out
    assert "test_efficientnet" in out and "center crop 64x64" in out


def test_info_says_how_a_squash_card_resizes(tiny_run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    card = ModelCard.load(run / "model.json")
    card.preprocess.crop_mode = "squash"
    card.save(run / "model.json")
    assert describe_artifact(run)["preprocess"]["crop_mode"] == "squash"
    assert main(["info", str(run)]) == 0
    n = int(64 / card.preprocess.crop_pct)
    assert f"resize to {n}x{n} (bicubic, aspect not kept), center crop 64x64" in capsys.readouterr().out


def test_info_on_onnx_counts_ops(tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    info = describe_artifact(tiny_onnx)
    assert info["backend"] == "onnxruntime" and info["precision"] == "fp32"
    assert info["ops"]["qdq_pairs"] == 0 and info["ops"]["op_counts"]["Conv"] > 0
    assert info["batch_range"] == [1, None] and info["inputs"][0]["dtype"] == "float32"
    assert info["outputs"][0]["shape"][1] == 2
    half = convert_float_to_float16(onnx.load(str(tiny_onnx)), keep_io_types=True)
    onnx.save(half, str(tmp_path / "fp16.onnx"))
    assert main(["info", str(tmp_path / "fp16.onnx"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["precision"] == "fp16" and got["ops"]["float16_share"] > 0.9


def test_info_on_engine_without_tensorrt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "model_int8.engine"
    engine.write_bytes(b"\x00" * 1024)
    card = ModelCard(arch="resnet50", classes=["ants", "bees"])
    (tmp_path / "manifest.json").write_text(json.dumps({"card": card.to_dict(), "artifacts": [
        {"file": "model_int8.engine", "format": "tensorrt", "precision": "int8",
         "details": {"tensorrt": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
                     "options": {"batch": [1, 8, 64]}}}]}))
    assert main(["info", str(engine)]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA H100 80GB HBM3" in out and "int8" in out and "1 .. 64" in out


def test_info_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "orphan.engine").write_bytes(b"x")
    assert main(["info", str(tmp_path / "orphan.engine")]) == 2
    assert "no edgetl metadata" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    assert main(["info", str(tmp_path / "junk.onnx")]) == 2
    assert "not a readable ONNX file" in capsys.readouterr().err


def test_no_export_record_for_a_file_the_manifest_does_not_list(tiny_onnx: Path, tmp_path: Path) -> None:
    for name in ("model.onnx", "copy.onnx"):
        shutil.copy(tiny_onnx, tmp_path / name)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "source": "runs/x/best.safetensors", "created": "2026-11-27T00:00:00+00:00",
        "artifacts": [{"file": "model.onnx", "format": "onnx", "precision": "fp32"}]}))
    assert describe_artifact(tmp_path / "model.onnx")["export"]["source"] == "runs/x/best.safetensors"
    record = describe_artifact(tmp_path / "copy.onnx")["export"]
    assert "source" not in record and "created" not in record
    assert record["warning"].startswith("manifest.json does not list copy.onnx")


def test_files_that_are_not_a_model_to_describe(tiny_run_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    shutil.copy(run / "best.safetensors", run / "train_state.safetensors")  # a real safetensors file, wrong role
    assert main(["info", str(run / "train_state.safetensors")]) == 2
    assert "the optimiser state `edgetl train --resume` reads, not model weights" in capsys.readouterr().err
    card = json.loads((run / "model.json").read_text())
    card["preprocess"]["crop_pct"] = 0
    (run / "model.json").write_text(json.dumps(card))
    assert main(["info", str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.json: preprocessing" in err and "crop_pct > 0" in err and "Traceback" not in err
