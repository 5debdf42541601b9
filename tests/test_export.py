"""Exporter on small real models: FP32/FP16/INT8 ONNX, parity gates, manifest + metadata, bad inputs.

Real torch, real ONNX Runtime, real photos (the hymenoptera set; skipped when absent). The models are
timm's tiny test_efficientnet / test_resnet at 64 px with random weights, so these check the exporter's
mechanics; accuracy on a real 1000-class model lives in test_export_real.py.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgetl.card import ModelCard, Preprocess
from edgetl.errors import EdgetlError
from edgetl.export.manifest import Manifest
from edgetl.export.onnx import read_metadata
from edgetl.export.pipeline import ExportOptions, export_artifacts
from edgetl.io import sha256_file
from edgetl.runtime.base import Runner, RunnerInfo

IMG = 64


def _run_dir(root: Path, arch: str = "test_efficientnet", classes: int = 5, seed: int = 0) -> Path:
    import torch

    from edgetl.checkpoint import save_checkpoint
    from edgetl.models.factory import card_for, create_model

    torch.manual_seed(seed)
    card = card_for(arch, [f"c{i}" for i in range(classes)], img_size=IMG)
    model = create_model(card)
    run = root / (arch if seed == 0 else f"{arch}_seed{seed}")
    save_checkpoint(run, "best", model, card)
    return run


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, hymenoptera: Path) -> tuple[Path, Manifest, Path]:
    """One export of a tiny EfficientNet at all three precisions (TensorRT-target INT8), engine asked for."""
    root = tmp_path_factory.mktemp("export")
    run = _run_dir(root)
    options = ExportOptions(fp16=True, int8=True, calib_data=hymenoptera / "train", calib_size=48, parity_size=32,
                            engine=True, batch=(1, 4, 16), quiet=True)
    manifest = export_artifacts(run, root / "out", options)
    return run, manifest, root / "out"


def test_fp32_parity_and_gate(exported: tuple[Path, Manifest, Path]) -> None:
    _, manifest, out = exported
    fp32 = manifest.artifact("fp32")
    assert (out / "model.onnx").is_file()
    assert fp32.parity is not None and fp32.parity["passed"], fp32.parity
    assert fp32.parity["max_abs_diff"] <= 1e-4
    assert fp32.parity["top1_agreement"] == 1.0
    assert fp32.parity["n"] == 32  # held out of calibration: 245 train images - 48 calibration, capped at 32
    assert manifest.parity_data["same_as_calibration"] is False
    assert fp32.details["export"]["exporter"] == "dynamo"


def test_manifest_and_metadata_round_trip(exported: tuple[Path, Manifest, Path]) -> None:
    run, manifest, out = exported
    loaded = Manifest.load(out)
    assert loaded.to_dict() == json.loads(json.dumps(manifest.to_dict()))  # tuples come back as lists
    assert loaded.source["sha256"] == sha256_file(run / "best.safetensors")
    card = ModelCard.load(run / "model.json")
    assert loaded.model_card == card
    for artifact in loaded.artifacts:
        path = out / artifact.file
        assert artifact.sha256 == sha256_file(path)
        meta = read_metadata(path)
        assert ModelCard.from_metadata(meta, str(path)) == card
        assert meta["edgetl.precision"] == artifact.precision
        assert artifact.inputs[0]["name"] == "input" and artifact.inputs[0]["dtype"] == "float32"
        assert artifact.inputs[0]["shape"][1:] == [3, IMG, IMG]
        assert artifact.outputs[0]["dtype"] == "float32"
    assert loaded.batch == {"min": 1, "opt": 4, "max": 16}
    assert {"torch", "onnx", "onnxruntime", "timm"} <= set(loaded.versions)


def test_dynamic_batch_1_and_7(exported: tuple[Path, Manifest, Path]) -> None:
    import torch

    from edgetl.checkpoint import load_model
    from edgetl.runtime.onnxruntime import OrtRunner

    run, _, out = exported
    model, _ = load_model(run)
    x = np.random.default_rng(1).standard_normal((7, 3, IMG, IMG)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with OrtRunner(out / "model.onnx", providers=["cpu"]) as runner:
        assert runner.info.max_batch is None  # dynamic
        np.testing.assert_allclose(runner.infer(x[:1]), ref[:1], atol=1e-4)
        np.testing.assert_allclose(runner.infer(x), ref, atol=1e-4)


def test_fp16_weights_io_and_gate(exported: tuple[Path, Manifest, Path]) -> None:
    _, manifest, out = exported
    art = manifest.artifact("fp16")
    model = onnx.load(str(out / art.file))
    weights = [i for i in model.graph.initializer if len(i.dims) >= 2]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert art.parity is not None and art.parity["passed"] and art.parity["top1_agreement"] >= 0.995


def _qdq(model: onnx.ModelProto) -> tuple[dict[str, np.ndarray], list[onnx.NodeProto], list[onnx.NodeProto]]:
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    return inits, q, dq


def test_int8_tensorrt_target_is_symmetric_per_channel(exported: tuple[Path, Manifest, Path]) -> None:
    _, manifest, out = exported
    art = manifest.artifact("int8")
    inits, q, dq = _qdq(onnx.load(str(out / art.file)))
    assert q and dq
    zero_points = [inits[n.input[2]] for n in q + dq if len(n.input) > 2 and n.input[2] in inits]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    weight_dq = [n for n in dq if n.input[0] in inits and inits[n.input[0]].ndim == 4]  # conv weights stored int8
    assert weight_dq and all(inits[n.input[1]].size == inits[n.input[0]].shape[0] for n in weight_dq)
    assert art.details["int8"]["target"] == "tensorrt"
    assert art.parity is not None and art.parity["evaluated_with"]["optimization"] == "disable"
    assert read_metadata(out / art.file)["edgetl.int8_target"] == "tensorrt"


def test_int8_tensorrt_layout_quantizes_layer_inputs_only(exported: tuple[Path, Manifest, Path]) -> None:
    """TensorRT's fusible layout: Q/DQ feed convolutions, never a Conv's output before its activation; float bias."""
    _, manifest, out = exported
    model = onnx.load(str(out / manifest.artifact("int8").file))
    inits = {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    quantized_input = [producer.get(n.input[0]) for n in convs]
    assert sum(p is not None and p.op_type == "DequantizeLinear" for p in quantized_input) >= len(convs) - 1
    for act in (n for n in model.graph.node if n.op_type in ("Clip", "Relu", "Sigmoid")):  # Conv→act, no Q/DQ between
        assert all(producer[i].op_type != "DequantizeLinear" for i in act.input if i in producer), act.name
    for conv in convs:  # biases stay float (TensorRT adds them in float; bias correction lives there)
        assert len(conv.input) < 3 or conv.input[2] in inits
    assert manifest.artifact("int8").details["int8"]["bias_corrected_layers"] == len(convs)


def _depthwise_onnx(path: Path, channels: int = 8) -> Path:
    """One 3x3 depthwise Conv (+bias) with weights whose rounding error is large and one-signed per channel."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.uniform(0.0, 1.0, (channels, 1, 3, 3)).astype(np.float32)
    w[:, 0, 0, 0] = 2.0  # an outlier per channel: the other taps round on a coarse grid
    w += 0.3 * (2.0 / 254)  # nudge every tap about a third of a step off the grid the same way
    b = np.zeros(channels, np.float32)
    node = helper.make_node("Conv", ["input", "w", "b"], ["out"], name="dw", group=channels, pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "dw", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                           ["N", channels, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", channels, 16, 16])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # opset 17's own IR version; onnx 1.23 writes 14, which onnxruntime 1.30 cannot read
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_bias_correction_removes_the_mean_shift_of_weight_rounding(tmp_path: Path, target: str) -> None:
    """With bias correction the INT8 layer's mean output matches FP32 per channel; without it, it drifts."""
    from edgetl.export.int8 import Int8Config, int8_from_onnx
    from edgetl.export.probe import session

    fp32 = _depthwise_onnx(tmp_path / "dw.onnx")
    rng = np.random.default_rng(1)
    calib = (2.0 + rng.standard_normal((32, 8, 16, 16))).astype(np.float32)  # post-ReLU-like: positive mean
    held_out = (2.0 + rng.standard_normal((16, 8, 16, 16))).astype(np.float32)
    ref = session(onnx.load(str(fp32))).run(None, {"input": held_out})[0]
    shift = {}
    for corrected in (False, True):
        config = Int8Config.for_target(target, bias_correction=corrected)
        report: dict[str, int] = {}
        path = int8_from_onnx(fp32, tmp_path / f"dw.{corrected}.onnx", calib, config, metadata={}, report=report)
        assert report["bias_corrected_layers"] == int(corrected)
        sess = session(onnx.load(str(path)), optimize=config.eval_optimization == "all")
        out = sess.run(None, {"input": held_out})[0]
        shift[corrected] = np.abs((out - ref).mean(axis=(0, 2, 3))).max()
    assert shift[False] > 0.02 and shift[True] < shift[False] / 4, shift


def test_imagenet_folder_names_map_onto_the_imagenet_head(hymenoptera: Path) -> None:
    """ants/ and bees/ are ImageNet classes 310 and 309: a labelled accuracy for the 1000-class head."""
    from edgetl.data.imagenet import IMAGENET_CLASSES, imagenet_index
    from edgetl.export.calib import labelled_images
    from edgetl.models.factory import default_preprocess

    assert [imagenet_index(n) for n in ("ants", "bees", "n02219486", "imagenet_309", "crane", "nothing")] == \
        [310, 309, 310, 309, None, None]  # "crane" is both a bird and a machine: no guess
    val = labelled_images(hymenoptera / "val", IMAGENET_CLASSES, default_preprocess("tf_efficientnet_lite0"), limit=6)
    assert val.class_map == {"ants": "imagenet_310", "bees": "imagenet_309"}
    assert val.labels is not None and set(val.labels) <= {309, 310} and len(val) == 6
    with pytest.raises(EdgetlError, match="not one of the model's classes"):  # other heads still need their names
        labelled_images(hymenoptera / "val", ["cat", "dog"], default_preprocess("tf_efficientnet_lite0"))


def test_no_tensorrt_prints_how_to_build(exported: tuple[Path, Manifest, Path]) -> None:
    from edgetl.runtime.cuda import tensorrt_module

    if tensorrt_module() is not None:
        pytest.skip("TensorRT is installed here; the engine path is covered by the trt-marked tests")
    _, manifest, out = exported
    build = manifest.engine_build
    assert build["status"].startswith("not built")
    assert not list(out.glob("*.engine"))
    line = build["trtexec"]["int8"]
    assert line.startswith("trtexec --onnx=model.int8.onnx --saveEngine=model.int8.engine --stronglyTyped")
    assert "--minShapes=input:1x3x64x64" in line and "--maxShapes=input:16x3x64x64" in line
    assert "--engine" in build["edgetl"] and "--out" in build["edgetl"]
    # the line makes the same INT8 model on the target: same images, count, method, target and judge
    import shlex

    from edgetl.cli import build_parser

    args = build_parser().parse_args(shlex.split(build["edgetl"])[1:])
    int8 = manifest.artifact("int8").details["int8"]
    used = int8["calibration_images"] + len(int8["calibration_skipped"])  # the same draw, the same files left out
    assert args.engine and args.int8 and args.fp16 and args.calib_size == used
    assert (args.calib_method, args.int8_target) == (int8["method"], int8["target"])
    assert str(args.calib_data) == manifest.artifact("int8").details["int8"]["calibration_source"]


def test_the_rebuild_line_carries_what_shapes_the_int8_budget_search(tmp_path: Path) -> None:
    import shlex

    from edgetl.cli import build_parser
    from edgetl.export.options import rebuild_flags

    options = ExportOptions(int8=True, calib_data=tmp_path, calib_size=64, calib_method="minmax", parity_size=48,
                            parity_data=tmp_path / "photos", max_accuracy_drop=0.5, max_excluded=1, opset=20)
    flags = rebuild_flags({"fp32": tmp_path / "model.onnx", "int8": tmp_path / "model.int8.onnx"}, tmp_path, options)
    args = build_parser().parse_args(["export", "run", *shlex.split(shlex.join(flags))])
    assert (args.max_accuracy_drop, args.max_excluded, args.parity_size) == (0.5, 1, 48)
    assert (args.parity_data, args.opset) == (tmp_path / "photos", 20)


@pytest.mark.parametrize(("flags", "message"), [
    (["--calib-method", "entropy"], "--calib-method shapes the INT8 model; add --int8"),
    (["--int8-target", "cpu"], "--int8-target shapes the INT8 model; add --int8"),
    (["--int8", "--calib-data", "d", "--max-excluded", "1"], "--max-excluded limits --max-accuracy-drop's search"),
    (["--trt-fp16-flag"], "--trt-fp16-flag builds the FP16 engine; add --fp16"),
])
def test_flags_that_would_change_nothing_are_errors(tmp_path: Path, flags: list[str], message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.cli import main

    assert main(["export", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_default_out_and_opset_range(tmp_path: Path) -> None:
    from edgetl.cli.export import default_out

    (tmp_path / "run").mkdir()
    assert default_out(str(tmp_path / "run")) == tmp_path / "run" / "export"
    assert default_out(str(tmp_path / "run" / "best.safetensors")) == tmp_path / "run" / "export"
    assert default_out("tf_efficientnet_lite0") == Path("export") / "tf_efficientnet_lite0"
    with pytest.raises(EdgetlError, match="--opset 9: choose 13 to"):
        ExportOptions(opset=9).validate()
    with pytest.raises(EdgetlError, match="provider 'rocm' is not one edgetl measures"):  # before any export
        ExportOptions(providers=["rocm"]).validate()


def test_an_opset_torch_cannot_convert_to_is_an_error_not_another_opset(tmp_path: Path) -> None:
    from edgetl.export.onnx import onnx_from_checkpoint

    run = _run_dir(tmp_path)  # its Pad / Reduce ops do not convert down from torch's opset 18
    with pytest.raises(EdgetlError, match="--opset 17: torch's exporter wrote opset 18 and could not convert"):
        onnx_from_checkpoint(run, tmp_path / "m17.onnx", opset=17)
    assert not (tmp_path / "m17.onnx").exists()


def test_builder_settings_survive_the_printed_rebuild_line() -> None:
    """Every non-default TensorRT setting becomes a flag that parses back to the same BuildSettings."""
    import dataclasses

    from edgetl.cli import build_parser
    from edgetl.export.tensorrt import BuildSettings

    settings = BuildSettings(workspace_mb=2048, version_compatible=True, hardware_compatibility="ampere+",
                             dla_core=0, legacy_fp16=True, profiles=2)
    args = build_parser().parse_args(["export", "run", *settings.cli_flags()])
    parsed = BuildSettings(workspace_mb=args.workspace, version_compatible=args.version_compatible,
                           hardware_compatibility=args.hardware_compatibility, dla_core=args.dla_core,
                           legacy_fp16=args.trt_fp16_flag, profiles=args.profiles)
    assert parsed == settings and BuildSettings().cli_flags() == []
    with pytest.raises(EdgetlError, match="--profiles 0 must be at least 1"):
        ExportOptions(trt=dataclasses.replace(settings, profiles=0)).validate()


def test_fp32_onnx_reused_for_another_int8_target_and_still_checked(exported: tuple[Path, Manifest, Path],
                                                                    tmp_path: Path, hymenoptera: Path) -> None:
    """--fp32-onnx: a second INT8 target from the first export's FP32 file, without exporting again. A file
    of another precision or batch shape is refused; one with another checkpoint's weights fails FP32 parity."""
    import dataclasses
    import shutil

    run, _, out = exported
    options = ExportOptions(int8=True, int8_target="cpu", calib_data=hymenoptera / "train", calib_size=24,
                            parity_size=16, batch=(1, 4, 16), fp32_onnx=out / "model.onnx", quiet=True)
    manifest = export_artifacts(run, tmp_path / "cpu", options)
    assert manifest.passed, manifest.failures
    assert sha256_file(tmp_path / "cpu" / "model.onnx") == sha256_file(out / "model.onnx")
    assert manifest.artifact("fp32").details["export"]["reused"] == str(out / "model.onnx")
    assert manifest.artifact("int8").details["int8"]["target"] == "cpu"
    fp32_only = dataclasses.replace(options, int8=False)
    for bad, why in ((dataclasses.replace(fp32_only, fp32_onnx=out / "model.fp16.onnx"), "is not an edgetl FP32 "
                                                                                         "export"),
                     (dataclasses.replace(fp32_only, static_batch=2), "has a batch shape other than this export's")):
        with pytest.raises(EdgetlError, match=why):
            export_artifacts(run, tmp_path / "bad", bad)
    inside = tmp_path / "again"
    inside.mkdir()
    shutil.copyfile(out / "model.onnx", inside / "model.onnx")
    with pytest.raises(EdgetlError, match="is in --out .* whose export this one replaces"):
        export_artifacts(run, inside, dataclasses.replace(fp32_only, fp32_onnx=inside / "model.onnx"))
    assert (inside / "model.onnx").is_file()  # refused before anything was cleared
    other = _run_dir(tmp_path, seed=1)  # same card, other weights: only parity can tell
    manifest = export_artifacts(other, tmp_path / "other", fp32_only)
    assert not manifest.passed and manifest.failures[0].startswith("model.onnx: ")


def test_int8_cpu_target_has_u8_activations(tmp_path: Path, hymenoptera: Path) -> None:
    run = _run_dir(tmp_path, "test_resnet", classes=4)
    options = ExportOptions(int8=True, int8_target="cpu", calib_data=hymenoptera / "val", calib_size=24,
                            parity_size=16, static_batch=2, quiet=True)
    manifest = export_artifacts(run, tmp_path / "out", options)
    model = onnx.load(str(tmp_path / "out" / "model.int8.onnx"))
    inits, q, _ = _qdq(model)
    activation_zp = [inits[n.input[2]] for n in q if n.input[2] in inits]
    assert activation_zp and all(z.dtype == np.uint8 for z in activation_zp)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2  # --static-batch
    art = manifest.artifact("int8")
    assert art.parity is not None and art.parity["evaluated_with"]["optimization"] == "all"
    assert art.details["int8"]["reduce_range"] is True  # the CPU target's default (x86 without VNNI)
    assert manifest.batch == {"static": 2}
    build = manifest.engine_build  # U8 Q/DQ is not for TensorRT: no engine line for it, and the reason
    assert list(build["trtexec"]) == ["fp32"] and "--int8" not in build["edgetl"]
    assert "TensorRT builds symmetric S8 only" in build["skipped"]["int8"]


def test_cpu_target_sensitivity_names_a_layer_not_a_folded_relu(tmp_path: Path, hymenoptera: Path) -> None:
    """The CPU layout folds ReLU into the Conv's output Q/DQ: the layer to keep float is the Conv itself."""
    from edgetl.export.calib import calibration_files, preprocess_files
    from edgetl.export.int8 import (
        Int8Config,
        int8_from_onnx,
        most_sensitive_node,
        prepare_for_quantization,
        quantizable_nodes,
    )

    run = _run_dir(tmp_path, "test_resnet", classes=4)
    export_artifacts(run, tmp_path / "out", ExportOptions(quiet=True))
    config = Int8Config.for_target("cpu")
    prepared = prepare_for_quantization(tmp_path / "out" / "model.onnx", tmp_path / "prepared.onnx")
    card = ModelCard.load(run / "model.json")
    images = preprocess_files(calibration_files(hymenoptera / "train")[:16], card.preprocess).array
    int8 = int8_from_onnx(prepared, tmp_path / "int8.onnx", images, config, metadata={})
    candidates = quantizable_nodes(prepared, config)
    assert candidates and not any(n.op_type == "Relu" and n.name in candidates
                                  for n in onnx.load(str(prepared)).graph.node)
    worst = most_sensitive_node(prepared, int8, images[:8], candidates, "cpu")
    assert worst is not None and worst[1] in ("Conv", "Gemm", "Add", "MaxPool", "GlobalAveragePool"), worst
    assert 0.0 < worst[2] < 1.0  # a relative error, not the gap between a clamped and an unclamped tensor


# --- bad inputs: one clear line, exit code 2 through the CLI ---

def _cli(argv: list[str]) -> int:
    from edgetl.cli import export as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    try:
        return cli.run(parser.parse_args(argv))
    except EdgetlError:
        return 2


def test_missing_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(EdgetlError, match="no checkpoint"):
        export_artifacts(run, tmp_path / "out", ExportOptions(quiet=True))
    assert _cli([str(run), "--out", str(tmp_path / "out")]) == 2


def test_wrong_architecture_for_weights(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    card = ModelCard.load(run / "model.json")
    card.arch = "test_resnet"
    card.save(run / "model.json")
    with pytest.raises(EdgetlError, match="do not fit test_resnet"):
        export_artifacts(run, tmp_path / "out", ExportOptions(quiet=True))
    assert not (tmp_path / "out").exists()  # a failed export leaves no empty folder behind


def test_re_export_replaces_the_previous_export_manifest_first(tmp_path: Path, hymenoptera: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    export_artifacts(_run_dir(tmp_path, classes=3), out, ExportOptions(
        fp16=True, calib_data=hymenoptera / "train", calib_size=8, parity_size=8, quiet=True))
    (out / ".export.killed").mkdir()  # staging left by an export killed with SIGKILL
    other = _run_dir(tmp_path / "b", arch="test_resnet", classes=4)

    def interrupted(*_: object, **__: object) -> None:
        assert not (out / "manifest.json").exists()  # the old manifest is gone before any new file lands
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # Ctrl-C as the new FP32 export starts
        patch.setattr("edgetl.export.pipeline._export_fp32", interrupted)
        with pytest.raises(KeyboardInterrupt):
            export_artifacts(other, out, ExportOptions(quiet=True))
    assert not (out / "model.fp16.onnx").exists() and not (out / ".export.killed").exists()
    for name in ("model.int8.onnx", "model.fp16.engine", "model.fp16.engine.json"):  # an interrupted export's
        (out / name).write_bytes(b"written before Ctrl-C, never checked")        # files, with no manifest
    manifest = export_artifacts(other, out, ExportOptions(quiet=True))
    assert [a.file for a in manifest.artifacts] == ["model.onnx"]
    assert sorted(p.name for p in out.glob("model*")) == ["model.onnx"]
    assert ModelCard.from_dict(manifest.card).arch == "test_resnet"


def test_empty_calibration_folder(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    empty = tmp_path / "calib"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(EdgetlError, match="no image files"):
        export_artifacts(run, tmp_path / "out", ExportOptions(int8=True, calib_data=empty, quiet=True))
    with pytest.raises(EdgetlError, match="--int8 needs --calib-data"):
        export_artifacts(run, tmp_path / "out", ExportOptions(int8=True, quiet=True))


def test_unwritable_output_dir(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(EdgetlError, match="cannot create output directory"):
        export_artifacts(run, blocker / "out", ExportOptions(quiet=True))
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(EdgetlError, match=f"--out {run}: a training run's directory; .* e.g. {run / 'export'}"):
        export_artifacts(run, run, ExportOptions(quiet=True))  # files beside weights they would stop describing
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written, not even a lock


def test_timm_name_needs_weights(tmp_path: Path) -> None:
    with pytest.raises(EdgetlError, match="needs --weights"):
        export_artifacts("tf_efficientnet_lite0", tmp_path / "out", ExportOptions(quiet=True))
    with pytest.raises(EdgetlError, match="fits tf_efficientnet_lite0, not resnet18"):
        export_artifacts("resnet18", tmp_path / "out", ExportOptions(weights="efficientnet_lite0", quiet=True))


def test_unsupported_op_names_the_op(tmp_path: Path) -> None:
    import torch
    from torch import nn

    from edgetl.export.onnx import onnx_from_model
    from edgetl.models.factory import card_for

    class Eigen(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.eigvals(x[:, 0, :4, :4]).real

    card = card_for("test_resnet", ["a", "b", "c", "d"], img_size=32)
    with pytest.raises(EdgetlError, match=r"test_resnet: cannot export.*aten\.linalg_eigvals"):
        onnx_from_model(Eigen(), card, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_fp16_keeps_overflowing_nodes_in_float32(tmp_path: Path, hymenoptera: Path) -> None:
    """Activations past the float16 range are found on the calibration images and kept in float32."""
    import torch
    from torch import nn

    from edgetl.export.calib import calibration_files, preprocess_files
    from edgetl.export.fp16 import fp16_from_onnx
    from edgetl.export.onnx import onnx_from_model
    from edgetl.export.probe import session
    from edgetl.models.factory import card_for

    class Loud(nn.Module):
        """A tiny classifier whose middle activations reach ~1e6 (float16 tops out at 65504)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.conv(x) * 1e5)
            return self.fc(torch.log1p(h).mean((2, 3)))

    torch.manual_seed(0)
    card = card_for("test_resnet", ["a", "b", "c"], img_size=32)
    fp32 = onnx_from_model(Loud(), card, tmp_path / "model.onnx")
    images = preprocess_files(calibration_files(hymenoptera / "val")[:16], card.preprocess).array
    report = fp16_from_onnx(fp32, tmp_path / "model.fp16.onnx", images)
    assert report.kept_fp32 and {k["op"] for k in report.kept_fp32} >= {"Mul", "Relu"}
    assert any("FP32 activation reaches" in k["reason"] for k in report.kept_fp32)
    half = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "model.fp16.onnx")))
    types = {v.name: v.type.tensor_type.elem_type for v in half.graph.value_info}
    kept = {k["node"] for k in report.kept_fp32}
    for node in half.graph.node:  # kept nodes compute in float32, the rest (conv, gemm) in float16
        if node.name in kept:
            assert types[node.output[0]] == onnx.TensorProto.FLOAT, node.name
        elif node.op_type in ("Conv", "Gemm"):
            assert types.get(node.output[0], onnx.TensorProto.FLOAT16) == onnx.TensorProto.FLOAT16, node.name
    # (ORT's CPU provider runs float16 Mul/Relu through float32 casts, so overflow must be found by range, as here)
    out = session(half, optimize=True).run(None, {"input": images})[0]
    assert np.all(np.isfinite(out)) and report.agreement >= 0.995


def test_info_gives_the_exports_verdict_and_drops_it_for_a_changed_file(
        exported: tuple[Path, Manifest, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from edgetl.cli import main
    from edgetl.info import describe_artifact

    _, manifest, out = exported
    export = describe_artifact(out / "model.onnx")["export"]
    n = manifest.artifact("fp32").parity["n"]  # type: ignore[index]
    assert export["parity_passed"] is True and export["parity"].startswith(f"pass ({n} images, top-1 agreement")
    assert main(["info", str(out / "model.onnx")]) == 0
    shown = capsys.readouterr().out
    assert "export parity" in shown and "parity_passed" not in shown  # one row says pass/FAIL and why
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.copyfile(copy / "model.fp16.onnx", copy / "model.onnx")  # not the file the manifest judged
    changed = describe_artifact(copy / "model.onnx")["export"]
    assert "parity" not in changed and "parity_passed" not in changed and "sha256 differs" in changed["warning"]


def test_the_export_table_shows_how_far_each_artifacts_probabilities_move(
        exported: tuple[Path, Manifest, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgetl.cli.export import print_summary

    _, manifest, _ = exported
    monkeypatch.setenv("COLUMNS", "250")
    print_summary(manifest)
    shown = capsys.readouterr().out
    fp16 = manifest.artifact("fp16").parity or {}
    assert "max |Δp|" in shown and f"{fp16['max_prob_diff']:.1e}" in shown and fp16["temperature"] == 1.0
    assert 0 < fp16["max_prob_diff"] < 0.05


def test_a_cpu_int8_says_it_has_no_engine_only_when_an_engine_was_asked_for(
        exported: tuple[Path, Manifest, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from edgetl.cli.export import print_summary

    why = {"int8": "model.int8.onnx is the CPU target's (U8 activations, for ONNX Runtime)"}
    for status, said in (("not requested", False), ("not built: TensorRT is not installed on this machine", True)):
        manifest = dataclasses.replace(exported[1], engine_build={**exported[1].engine_build, "status": status,
                                                                  "skipped": why})
        print_summary(manifest)
        assert ("no int8 engine:" in capsys.readouterr().out) == said


def test_predict_warns_about_a_file_that_failed_its_export_gate_or_is_not_the_file_checked(
        exported: tuple[Path, Manifest, Path], hymenoptera: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from edgetl.cli import main

    _, _, out = exported
    photo = str(next((hymenoptera / "val" / "bees").glob("*.jpg")))
    assert main(["predict", str(out / "model.fp16.onnx"), photo]) == 0
    assert "failed its parity gate" not in capsys.readouterr().err
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())  # as an export that failed FP16's gate writes it
    entry = next(a for a in manifest["artifacts"] if a["file"] == "model.fp16.onnx")
    entry["parity"].update(passed=False, failures=["top-1 agreement 97.00% < 99.50%"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["predict", str(copy / "model.fp16.onnx"), photo]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: model.fp16.onnx failed its parity gate at export (FAIL: top-1 agreement 97.00% < 99.50%" in err
    swapped = copy / "model.fp16.onnx"
    shutil.copy(out / "model.onnx", swapped)  # another file under the name the manifest checked
    assert main(["predict", str(swapped), photo]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: model.fp16.onnx: the file is not the one this manifest describes (sha256 differs)" in err


@pytest.mark.parametrize("where", ["held out of calibration", "parity data", "the calibration images"])
def test_unlabelled_parity_images_are_drawn_from_every_class_folder(where: str, hymenoptera: Path) -> None:
    """Sorted files begin with one class (all ants here; 5 of 1000 ImageNet classes): parity draws a seeded sample."""
    from edgetl.export.verify import _load_images
    from edgetl.models.factory import card_for

    card = card_for("test_efficientnet", ["ants", "bees"], img_size=IMG)
    calib_size = {"held out of calibration": 48, "parity data": 48, "the calibration images": 400}[where]
    options = ExportOptions(int8=True, calib_data=hymenoptera / "train", calib_size=calib_size, parity_size=32,
                            parity_data=hymenoptera / "val" if where == "parity data" else None)
    _, parity, info = _load_images(card, options)
    folders = [p.parent.name for p in parity.paths]
    assert len(folders) == info["n"] == 32
    assert info["source"] == str(hymenoptera / "val") if where == "parity data" else where in info["source"]
    assert 8 <= folders.count("ants") <= 24, folders
    assert _load_images(card, options)[1].paths == parity.paths  # seeded: the same images every export


def test_the_summary_shows_top5_overlap_past_five_classes(exported: tuple[Path, Manifest, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.cli.export import print_summary

    print_summary(exported[1])  # 5 classes: every top-5 holds them all, so no such column
    assert "top-5 overlap" not in capsys.readouterr().out
    manifest = export_artifacts(_run_dir(tmp_path, "test_resnet", classes=10), tmp_path / "out",
                                ExportOptions(quiet=True))
    print_summary(manifest)
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "top-5 overlap" in line).split("┃")
    row = next(line for line in lines if "model.onnx" in line).split("│")
    overlap = row[header.index(" top-5 overlap ")].strip()
    assert overlap == f"{manifest.artifact('fp32').parity['top5_overlap']:.2%}" and float(overlap[:-1]) >= 99.0


def test_fp16_keeps_nodes_near_the_top_of_the_float16_range_in_float32(tmp_path: Path, hymenoptera: Path) -> None:
    """Calibration images only sample the inputs: an activation reaching ~30000 (past a quarter of float16's
    65504) overflows on a brighter photo, so it stays in float32 up front."""
    import torch
    from torch import nn

    from edgetl.export.calib import calibration_files, preprocess_files
    from edgetl.export.fp16 import fp16_from_onnx
    from edgetl.export.onnx import onnx_from_model
    from edgetl.models.factory import card_for

    class Warm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc((torch.relu(self.conv(x)) * 20.0).mean((2, 3)))

    torch.manual_seed(0)
    card = card_for("test_resnet", ["a", "b", "c"], img_size=32)
    model = Warm()
    images = preprocess_files(calibration_files(hymenoptera / "val")[:16], card.preprocess).array
    with torch.no_grad():
        peak = float((torch.relu(model.conv(torch.from_numpy(images))) * 20.0).abs().max())
        model.conv.weight *= 30000.0 / peak
        model.conv.bias *= 30000.0 / peak
    fp32 = onnx_from_model(model, card, tmp_path / "model.onnx")
    report = fp16_from_onnx(fp32, tmp_path / "model.fp16.onnx", images)
    assert any(k["op"] == "Mul" and "FP32 activation reaches" in k["reason"] for k in report.kept_fp32), report


class _FixedLogits(Runner):
    """A runner that answers given logits: what an artifact with an inf in one class would return."""

    def __init__(self, logits: np.ndarray) -> None:
        self.card = ModelCard("fixed", ["a", "b", "c"], Preprocess((3, 8, 8)))
        self.info = RunnerInfo("onnxruntime", "fp16", "cpu")
        self.logits = logits

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.logits[:len(batch)]


def test_an_export_whose_outputs_hold_inf_fails_its_parity_even_where_the_gate_passes() -> None:
    from edgetl.export.calib import ImageSet
    from edgetl.export.verify import ParitySet, parity_record

    ref = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    cand = ref.copy()
    cand[0, ref[0].argmin()] = -np.inf  # a losing class: top-1 unchanged, so FP16's agreement gate alone passes
    images = ImageSet(np.zeros((8, 3, 8, 8), np.float32), [Path(f"{i}.jpg") for i in range(8)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said in words below, not as numpy's RuntimeWarnings on the user's terminal
        record = parity_record(_FixedLogits(cand), ParitySet(images, ref, {}), "fp16", ExportOptions(quiet=True), "x")
    assert record["top1_agreement"] == 1.0
    assert not record["passed"] and "outputs contain inf/NaN" in record["failures"]


def test_int8_drop_without_labels_is_the_disagreement_in_points() -> None:
    from edgetl.export.verify import int8_drop
    from edgetl.parity import compare_logits

    ref = np.eye(8, 3)[[0, 1, 2, 0, 1, 2, 0, 1]] * 5.0
    cand = ref.copy()
    cand[0] = [0.0, 5.0, 0.0]  # 1 of 8 images answers another class
    assert int8_drop(compare_logits(ref, cand)) == (pytest.approx(12.5), "top-1 disagreement with FP32 (no labels)")
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    assert int8_drop(compare_logits(ref, cand, labels))[0] == pytest.approx(12.5)  # with labels: the same image
