"""What to export: a trained run (``model.json`` + ``best.safetensors``) or a timm name with ``--weights``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.card import ModelCard
from edgetl.errors import EdgetlError
from edgetl.io import sha256_file

if TYPE_CHECKING:
    from torch import nn


def _timm_with_file(arch: str, path: Path) -> tuple[nn.Module, ModelCard]:
    """A timm model with its own (pretrained-config) head, loaded strictly from a weights file."""
    import timm

    from edgetl.checkpoint import load_state
    from edgetl.models.factory import default_preprocess
    from edgetl.models.weights import fit_names, read_weights_file

    state = read_weights_file(path)
    model = timm.create_model(arch)
    state = fit_names(state, model.state_dict())
    card = ModelCard(arch=arch, classes=[f"class_{i}" for i in range(int(str(model.num_classes)))],
                     preprocess=default_preprocess(arch), weights=str(path))
    load_state(model, state, source=path, arch=arch)
    return model.eval(), card


def load_source(source: str | Path, weights: str | None = None) -> tuple[nn.Module, ModelCard, dict[str, Any]]:
    """(model in eval mode, card, provenance with the checkpoint's sha256)."""
    import timm

    from edgetl.checkpoint import load_model, resolve_checkpoint
    from edgetl.models.weights import LITE_PACKAGES, imagenet_lite_model, lite_package_file

    path = Path(source)
    if path.is_file() and path.suffix.lower() != ".safetensors":
        hint = (" (reuse an ONNX file with --fp32-onnx)" if path.suffix.lower() == ".onnx"
                else " (a raw weights file: pass the timm model name with --weights FILE)")
        raise EdgetlError(f"{path}: edgetl exports a run directory, its .safetensors checkpoint or a timm model "
                          f"name with --weights{hint}")
    if path.exists():
        if weights is not None:
            raise EdgetlError(f"{path}: --weights is for timm model names; a run directory already holds its weights")
        weights_file, _ = resolve_checkpoint(path)
        model, card = load_model(path)
        return model, card, {"kind": "checkpoint", "path": str(weights_file.resolve()),  # found from anywhere
                             "sha256": sha256_file(weights_file)}
    name = str(source)
    if not timm.is_model(name):
        raise EdgetlError(f"{name}: no such run directory or checkpoint, and not a timm model name; pass a run "
                          "directory (model.json + best.safetensors) or e.g. tf_efficientnet_lite0 --weights "
                          "efficientnet_lite0")
    if weights is None:
        raise EdgetlError(f"{name}: a timm model name needs --weights (efficientnet_lite0, efficientnet_lite1 or a "
                          ".safetensors/.pth file); or export a trained run directory")
    if weights in LITE_PACKAGES:
        expected = LITE_PACKAGES[weights][2]
        if name.split(".")[0] != expected:  # tf_efficientnet_lite0.in1k is the same model
            raise EdgetlError(f"--weights {weights} fits {expected}, not {name}; change the model name")
        model, card = imagenet_lite_model(weights)
        pth = lite_package_file(weights)
        return model, card, {"kind": "timm", "arch": name, "weights": weights, "path": str(pth),
                             "sha256": sha256_file(pth)}
    model, card = _timm_with_file(name, Path(weights))
    return model, card, {"kind": "timm", "arch": name, "weights": weights, "sha256": sha256_file(weights)}
