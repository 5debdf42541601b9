"""Losses: cross-entropy with label smoothing, and focal loss for imbalanced classes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgetl.errors import EdgetlError


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``-alpha_y (1 - p_y)^gamma log p_y``, averaged over the batch.

    Computed from ``log_softmax`` so it stays finite for confident logits; with gamma 0 and alpha 1
    it is exactly cross-entropy.
    """

    alpha: torch.Tensor | None

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise EdgetlError(f"--focal-gamma {gamma}: must be >= 0 (0 gives cross-entropy)")
        self.gamma = float(gamma)
        self.register_buffer("alpha", torch.tensor(list(alpha), dtype=torch.float32) if alpha is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        # 1 - p as -expm1(log p): exact near p = 1; the clamp keeps pow's gradient finite at 0
        weight = (-torch.expm1(log_p)).clamp(min=1e-12) ** self.gamma if self.gamma else 1.0
        loss = -weight * log_p
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()


def auto_alpha(counts: Sequence[int]) -> list[float]:
    """Inverse-frequency class weights, normalised to mean 1 (a balanced set gets all ones)."""
    if any(c <= 0 for c in counts):
        raise EdgetlError("--focal-alpha auto: a class has no training images; add some or give --focal-alpha a list")
    inv = [1.0 / c for c in counts]
    scale = len(inv) / sum(inv)
    return [w * scale for w in inv]


def resolve_alpha(alpha: str | Sequence[float] | None, counts: Sequence[int]) -> list[float] | None:
    """``None`` (no weighting), ``"auto"`` (from class frequencies) or one weight per class."""
    if alpha is None or alpha == "none":
        return None
    if alpha == "auto":
        return auto_alpha(counts)
    if isinstance(alpha, str):
        try:
            values = [float(a) for a in alpha.split(",")]
        except ValueError:
            raise EdgetlError(f"--focal-alpha {alpha!r}: give 'auto' or "
                              "comma-separated weights, one per class") from None
    else:
        values = [float(a) for a in alpha]
    if len(values) != len(counts):
        raise EdgetlError(f"--focal-alpha has {len(values)} weight(s) but the data has {len(counts)} classes; "
                          "give one per class or 'auto'")
    return values


def build_loss(name: str, *, label_smoothing: float = 0.0, focal_gamma: float = 2.0,
               focal_alpha: str | Sequence[float] | None = None, class_counts: Sequence[int] = ()) -> nn.Module:
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(focal_gamma, resolve_alpha(focal_alpha, class_counts))
    raise EdgetlError(f"--loss {name!r}: choose one of ce, focal")
