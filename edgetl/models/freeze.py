"""Which parameters learn: the head plus the top N backbone stages, found generically.

Stages come from timm's coarse group matcher (``stem``, ``blocks.0`` … / ``layer1`` …), so the
same code freezes EfficientNet, EfficientNet-Lite, ResNet and any other timm classifier.
"""

from __future__ import annotations

from torch import nn

from edgetl.errors import EdgetlError
from edgetl.models.factory import head_prefixes, unwrap


def head_param_names(model: nn.Module) -> list[str]:
    """Parameters of the classifier head, or both heads of a distilled model (always trainable)."""
    prefixes = head_prefixes(model)
    return [n for n, _ in model.named_parameters() if n.startswith(prefixes)]


def stage_param_names(model: nn.Module) -> list[list[str]]:
    """Backbone parameter names per stage, from the input (stem) to the output; the head excluded."""
    from timm.models import group_parameters

    matcher = getattr(model, "group_matcher", None)
    if matcher is None:
        raise EdgetlError(f"{type(model).__name__} has no timm group_matcher; use --strategy full or linear-probe")
    head = set(head_param_names(model))
    groups = group_parameters(model, matcher(coarse=True))
    stages = [[n for n in names if n not in head] for _, names in sorted(groups.items())]
    return _merge_norm_only([s for s in stages if s], dict(model.named_parameters()))


def _merge_norm_only(stages: list[list[str]], params: dict[str, nn.Parameter]) -> list[list[str]]:
    """A group of only norm parameters (ConvNeXt's ``head.norm``, DenseNet's ``norm5``) joins the stage before it.

    timm's matcher leaves such a norm as a group of its own; counted as a stage, ``--unfreeze 1`` would train
    that norm alone, a linear probe in all but name.
    """
    merged: list[list[str]] = []
    for stage in stages:
        if merged and all(params[n].ndim <= 1 for n in stage):
            merged[-1] = merged[-1] + stage
        else:
            merged.append(stage)
    return merged


def trainable_stages(strategy: str, num_stages: int, epoch: int = 0, unfreeze: int = 1, unfreeze_every: int = 1) -> int:
    """How many of the top stages learn in ``epoch`` (0 = head only)."""
    if strategy == "full":
        return num_stages
    if strategy == "linear-probe":
        return 0
    if strategy == "partial":
        if not 0 <= unfreeze <= num_stages:
            raise EdgetlError(f"--unfreeze {unfreeze}: this model has {num_stages} stages; choose 0..{num_stages}")
        return unfreeze
    if strategy == "gradual":
        return min(num_stages, epoch // unfreeze_every)
    raise EdgetlError(f"--strategy {strategy!r}: choose one of linear-probe, full, partial, gradual")


def apply_freeze(model: nn.Module, n_trainable: int) -> int:
    """Make the head and the top ``n_trainable`` stages trainable, freeze the rest; return the trainable count."""
    stages = stage_param_names(model)
    trainable = set(head_param_names(model))
    for stage in stages[len(stages) - n_trainable:] if n_trainable > 0 else []:
        trainable.update(stage)
    count = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
        count += p.numel() if name in trainable else 0
    return count


def frozen_bn_to_eval(model: nn.Module, all_bn: bool = False) -> None:
    """Put every BatchNorm whose parameters are all frozen (or every backbone one, ``all_bn``) in eval mode.

    Call after ``model.train()``. A frozen backbone must also keep its running statistics: a linear probe
    on a few hundred images would otherwise re-estimate ImageNet's BN statistics from tiny, augmented
    batches. ``all_bn`` (``--freeze-bn``) keeps them for trainable layers too: on small data far from
    ImageNet, batch statistics shift every feature at once, and a fine-tune that starts from a probe
    (LP-FT) loses the head's fit in its first step (measured on the built-in digits: 88% → 48% val top-1).
    A ``--head-hidden`` head's own BatchNorm has no pretrained statistics to keep: it learns as the head does.
    """
    inner = unwrap(model)
    head = head_prefixes(inner)
    for name, module in inner.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if (all_bn and not name.startswith(head)) or (params and not any(p.requires_grad for p in params)):
                module.eval()
