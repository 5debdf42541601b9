"""timm families beyond EfficientNet and ResNet: distilled models with two heads (DeiT, LeViT), fixed-size
models asked for another size (ViT), and models that merge branches for inference (RepVGG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgetl.cli as cli
from edgetl.card import HeadConfig
from edgetl.models.factory import card_for, classifier_names, create_model, deploy_form
from edgetl.models.freeze import apply_freeze, head_param_names, stage_param_names
from edgetl.models.weights import load_weights, zero_init_head

pytestmark = pytest.mark.usefixtures("single_thread")

DISTILLED = "deit_tiny_distilled_patch16_224"  # timm's classifier: ("head", "head_dist"), averaged in eval


def _distilled(hidden: int = 0) -> nn.Module:
    torch.manual_seed(0)
    return create_model(card_for(DISTILLED, ["a", "b", "c"], img_size=32, head=HeadConfig(hidden=hidden)))


def test_both_heads_of_a_distilled_model_are_the_head() -> None:
    model = _distilled(hidden=8)
    assert classifier_names(model) == ("head", "head_dist")
    assert all(isinstance(model.get_submodule(n), nn.Sequential) for n in ("head", "head_dist"))  # hidden on both
    head = head_param_names(model)
    assert {n.split(".")[0] for n in head} == {"head", "head_dist"}
    assert not any(n.startswith(("head.", "head_dist.")) for stage in stage_param_names(model) for n in stage)
    assert apply_freeze(model, 0) == sum(p.numel() for n, p in model.named_parameters() if n in head)
    zero_init_head(model)
    assert model.eval()(torch.randn(2, 3, 32, 32)).abs().max() == 0  # both heads start at uniform predictions


def test_weights_for_224_px_load_into_a_model_built_for_32(tmp_path: Path) -> None:
    """The file's position embeddings are resampled as timm does for hub weights; its two 1000-class heads
    are the heads edgetl replaces, not a shape error."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model(DISTILLED)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "deit.safetensors"))
    model = _distilled()
    report = load_weights(model, DISTILLED, str(tmp_path / "deit.safetensors"))
    assert report.loaded == 151 and not report.missing and not report.unexpected
    assert torch.equal(model.state_dict()["blocks.0.attn.qkv.weight"], source.state_dict()["blocks.0.attn.qkv.weight"])
    assert model.pos_embed.shape == (1, 4 + 2, 192) != source.pos_embed.shape  # 2x2 patches + cls + dist


def test_a_fixed_size_model_is_built_for_the_size_asked() -> None:
    model = create_model(card_for("test_vit", ["a", "b"], img_size=64))  # timm builds it for 160 px
    assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 2)


def test_a_distilled_vit_trains_and_exports_at_a_small_size(digits_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(digits_data), "--model", DISTILLED, "--img-size", "32", "--epochs", "1",
                     "--strategy", "linear-probe", "--head-hidden", "16", "--out", str(run), "--quiet"]) == 0
    assert cli.main(["export", str(run), "--out", str(tmp_path / "export"), "--parity-data", str(digits_data)]) == 0
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["passed"] and [a["precision"] for a in manifest["artifacts"]] == ["fp32"]
    assert manifest["card"]["preprocess"]["input_size"] == [3, 32, 32]


def test_branches_are_merged_before_export_and_the_file_answers_like_the_model(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from edgetl.export.onnx import onnx_from_model

    torch.manual_seed(0)
    card = card_for("repvgg_a0", ["a", "b", "c"], img_size=32)
    model = create_model(card).eval()
    trained_form = sum(p.numel() for p in model.parameters())
    merged, changed = deploy_form(model)
    assert changed and sum(p.numel() for p in merged.parameters()) < trained_form
    info: list = []
    path = onnx_from_model(model, card, tmp_path / "repvgg.onnx", info=info)
    assert info[0].reparameterized and sum(p.numel() for p in model.parameters()) == trained_form  # caller's kept
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(path)).graph.node)
    assert convs == sum(isinstance(m, nn.Conv2d) for m in merged.modules()) == 22  # one conv per block, not 3
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = model(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    assert deploy_form(create_model(card_for("test_resnet", ["a", "b"], img_size=32)))[1] is False


def test_a_hidden_head_survives_merging_a_head_that_folds_its_norm() -> None:
    """LeViT's and EfficientViT-M's ``head`` folds a BatchNorm into ``head.linear``; with ``--head-hidden`` that
    Linear is edgetl's head, so that one module stays as trained while the backbone is merged."""
    torch.manual_seed(0)
    model = create_model(card_for("efficientvit_m0", ["a", "b", "c"], img_size=64, head=HeadConfig(hidden=16))).eval()
    merged, changed = deploy_form(model)
    assert changed and sum(p.numel() for p in merged.parameters()) < sum(p.numel() for p in model.parameters())
    assert isinstance(merged.get_submodule("head.linear"), nn.Sequential)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        want, got = model.forward_features(x), merged.forward_features(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
        torch.testing.assert_close(merged(x), model(x), rtol=1e-4, atol=1e-5)


def test_fp16_keeps_a_cast_from_bool(tmp_path: Path) -> None:
    """EdgeNeXt's position encoding sums a bool mask cast to float: bool → float16 → float32 is a real cast,
    not a round trip to drop (dropping it fed a bool to CumSum and ONNX Runtime rejected the graph)."""
    import onnx

    from edgetl.export.fp16 import fp16_from_onnx
    from edgetl.export.onnx import onnx_from_model
    from edgetl.export.probe import session

    class CumulativeMask(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv(x)
            position = (~torch.zeros_like(h[:, 0]).bool()).float().cumsum(1)
            return self.fc((h + position.unsqueeze(1)).mean((2, 3)))

    torch.manual_seed(0)
    model = CumulativeMask().eval()
    path = onnx_from_model(model, card_for("test_resnet", ["a", "b", "c"], img_size=16), tmp_path / "m.onnx")
    images = np.random.default_rng(0).normal(size=(8, 3, 16, 16)).astype(np.float32)
    fp16_from_onnx(path, tmp_path / "m.fp16.onnx", images)
    got = session(onnx.load(str(tmp_path / "m.fp16.onnx")), optimize=True).run(None, {"input": images})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(images)).numpy(), rtol=1e-2, atol=1e-2)
