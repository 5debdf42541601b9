"""`edgetl info` on each kind of artifact, from the files alone."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from edgetl.card import ModelCard
from edgetl.cli import main
from edgetl.runtime.describe import describe_artifact


def test_info_on_run_dir(tiny_run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = describe_artifact(tiny_run_dir)
    assert info["backend"] == "torch" and info["precision"] == "fp32"
    assert info["classes"] == ["ants", "bees"] and info["parameters"] > 10_000
    assert info["inputs"][0]["shape"] == ["N", 3, 64, 64]
    assert main(["info", str(tiny_run_dir)]) == 0
    out = capsys.readouterr().out
    assert "test_efficientnet" in out and "center crop 64x64" in out


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
