"""Parity: does a candidate artifact still answer like the reference model?

``compare_logits`` computes the figures on logits already produced by two runners over the same
images; ``GATES`` holds the default pass/fail rules per precision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Gate:
    """Pass/fail rule; None disables a check."""

    min_agreement: float | None = None  # top-1 agreement with the reference, fraction
    max_abs_diff: float | None = None  # max abs logit difference
    max_accuracy_drop: float | None = None  # top-1 accuracy drop in points (needs labels)


GATES: dict[str, Gate] = {
    "fp32": Gate(min_agreement=1.0, max_abs_diff=1e-4),
    "fp16": Gate(min_agreement=0.995),
    "int8": Gate(max_accuracy_drop=1.0),
}


@dataclass
class ParityStats:
    n: int
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    top1_agreement: float
    top5_overlap: float
    ref_accuracy: float | None = None
    cand_accuracy: float | None = None
    accuracy_drop: float | None = None  # points (percent)
    worst: list[int] = field(default_factory=list)  # indices where the candidate differs most

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_logits(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None = None,
                   n_worst: int = 10) -> ParityStats:
    """Figures for ``cand`` against ``ref`` (N x C logits), with accuracy when ``labels`` are given."""
    ref = np.asarray(ref, np.float64)
    cand = np.asarray(cand, np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"logit shapes differ: reference {ref.shape}, candidate {cand.shape}")
    diff = np.abs(ref - cand)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cos = np.sum(ref * cand, axis=1) / np.maximum(norms, 1e-12)
    ref_top1, cand_top1 = ref.argmax(1), cand.argmax(1)
    k = min(5, ref.shape[1])
    ref_k, cand_k = np.argsort(-ref, 1)[:, :k], np.argsort(-cand, 1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_k, cand_k, strict=True)]) if len(ref) else 1.0
    per_image = diff.max(axis=1) + (ref_top1 != cand_top1) * 1e6  # disagreements first
    stats = ParityStats(
        n=len(ref), max_abs_diff=float(diff.max(initial=0.0)), mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        cosine=float(cos.mean()) if len(cos) else 1.0,
        top1_agreement=float(np.mean(ref_top1 == cand_top1)) if len(ref) else 1.0,
        top5_overlap=float(overlap), worst=[int(i) for i in np.argsort(-per_image)[:n_worst]],
    )
    if labels is not None and len(labels):
        labels = np.asarray(labels)
        stats.ref_accuracy = float(np.mean(ref_top1 == labels) * 100)
        stats.cand_accuracy = float(np.mean(cand_top1 == labels) * 100)
        stats.accuracy_drop = stats.ref_accuracy - stats.cand_accuracy
    return stats


def check_gate(stats: ParityStats, gate: Gate) -> list[str]:
    """The reasons ``stats`` fails ``gate`` (empty when it passes)."""
    fails = []
    if gate.min_agreement is not None and stats.top1_agreement < gate.min_agreement:
        fails.append(f"top-1 agreement {stats.top1_agreement:.2%} < {gate.min_agreement:.2%}")
    if gate.max_abs_diff is not None and stats.max_abs_diff > gate.max_abs_diff:
        fails.append(f"max abs diff {stats.max_abs_diff:.2e} > {gate.max_abs_diff:.0e}")
    if gate.max_accuracy_drop is not None and stats.accuracy_drop is not None \
            and stats.accuracy_drop > gate.max_accuracy_drop:
        fails.append(f"top-1 drop {stats.accuracy_drop:.2f} pts > {gate.max_accuracy_drop:.2f}")
    return fails
