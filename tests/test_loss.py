"""Focal loss against its formula and against cross-entropy; class weights; numerical stability."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgetl.errors import EdgetlError
from edgetl.train.loss import FocalLoss, auto_alpha, build_loss, resolve_alpha


def _batch(n: int = 64, c: int = 5, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, c, generator=g) * scale, torch.randint(0, c, (n,), generator=g)


def test_focal_with_gamma_0_and_alpha_1_is_cross_entropy() -> None:
    logits, target = _batch()
    expected = F.cross_entropy(logits, target)
    torch.testing.assert_close(FocalLoss(0.0)(logits, target), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(FocalLoss(0.0, [1.0] * 5)(logits, target), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_focal_matches_the_formula(gamma: float) -> None:
    logits, target = _batch()
    alpha = [0.1, 0.2, 0.3, 0.25, 0.15]
    p = torch.softmax(logits.double(), dim=1)[torch.arange(len(target)), target]
    expected = (-torch.tensor(alpha, dtype=torch.float64)[target] * (1 - p) ** gamma * torch.log(p)).mean()
    got = FocalLoss(gamma, alpha)(logits, target)
    assert abs(got.item() - expected.item()) < 1e-5 * max(1.0, expected.item())
    assert got.item() < F.cross_entropy(logits, target).item()  # down-weights easy examples


def test_focal_stays_finite_for_extreme_logits() -> None:
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    target = torch.tensor([0, 0, 2])  # one sure-right, one sure-wrong, one uncertain
    for gamma in (0.5, 2.0):
        loss = FocalLoss(gamma)(logits, target)
        loss.backward()
        assert torch.isfinite(loss) and loss.item() > 1000  # the sure-wrong one dominates, finitely
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        logits.grad = None


def test_auto_alpha_is_inverse_frequency_with_mean_one() -> None:
    alpha = auto_alpha([10, 30, 60])
    assert sum(alpha) / 3 == pytest.approx(1.0)
    assert alpha[0] / alpha[1] == pytest.approx(3.0) and alpha[0] / alpha[2] == pytest.approx(6.0)
    assert auto_alpha([5, 5]) == pytest.approx([1.0, 1.0])


def test_alpha_parsing_and_errors() -> None:
    assert resolve_alpha("auto", [1, 3]) == pytest.approx([1.5, 0.5])
    assert resolve_alpha("0.25,0.75", [1, 3]) == [0.25, 0.75]
    assert resolve_alpha(None, [1, 3]) is None
    with pytest.raises(EdgetlError, match="one per class"):
        resolve_alpha([0.5, 0.5, 0.5], [1, 3])
    with pytest.raises(EdgetlError, match="comma-separated"):
        resolve_alpha("heavy", [1, 3])


def test_build_loss_ce_with_label_smoothing() -> None:
    logits, target = _batch()
    loss = build_loss("ce", label_smoothing=0.1)
    torch.testing.assert_close(loss(logits, target), F.cross_entropy(logits, target, label_smoothing=0.1))
    with pytest.raises(EdgetlError, match="ce, focal"):
        build_loss("hinge")
