"""AdamW with decoupled weight decay (none on norms and biases) and a per-step cosine schedule.

The learning rate is a pure function of the global step, so resuming needs only the step count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgetl.models.freeze import head_param_names


def param_groups(model: nn.Module, weight_decay: float, backbone_lr_mult: float = 1.0) -> list[dict]:
    """Trainable parameters in up to four groups: (backbone | head) x (decay | no decay).

    Norm weights and biases (ndim <= 1) get no weight decay; ``lr_scale`` carries the
    discriminative learning-rate multiplier of the backbone.
    """
    head = set(head_param_names(model))
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            buckets.setdefault((name in head, p.ndim > 1), []).append(p)
    groups = []
    for (is_head, decay), params in sorted(buckets.items()):
        groups.append({"params": params, "weight_decay": weight_decay if decay else 0.0,
                       "lr_scale": 1.0 if is_head else backbone_lr_mult,
                       "name": f"{'head' if is_head else 'backbone'}_{'decay' if decay else 'no_decay'}"})
    return groups


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float = 1.0,
                    previous: torch.optim.Optimizer | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; moment estimates of ``previous`` carry over (gradual unfreezing)."""
    opt = torch.optim.AdamW(param_groups(model, weight_decay, backbone_lr_mult), lr=lr)
    if previous is not None:
        for group in opt.param_groups:
            for p in group["params"]:
                if p in previous.state:
                    opt.state[p] = previous.state[p]
    return opt


def lr_at(step: int, base_lr: float, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to ``min_ratio * base_lr``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
