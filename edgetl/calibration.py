"""Probabilities that mean what they say: how far they are from how often the model is right, and one
temperature that brings them closer (temperature scaling, Guo et al. 2017).

A briefly trained head can be right 95% of the time while saying 0.7, and a long-trained one says 0.99 when
it is right 90% of the time. Dividing the logits by one scalar T, fitted on the validation set, fixes most of
it without moving any answer (the top-1 class of ``logits / T`` is that of ``logits`` for every T > 0). T lives
in the model card, so every artifact's probabilities (the Predictor, ``edgetl predict``/``eval``) use it;
the network's own logits, and so parity, are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

CALIBRATION_BINS = 15
MISCALIBRATED = 0.1  # mean top-1 probability this far from the accuracy: its probabilities mislead a threshold
# Where the fit may put T. A validation set the model gets all right drives the fit towards 0 (certainty);
# the bound keeps such a fit finite and says so (``at_bound``).
T_MIN, T_MAX = 0.05, 20.0
FIT_STEPS = 36  # golden-section steps on log T: T to about 1e-7 of itself
HELDOUT_FOLDS = 2
MIN_FIT_IMAGES = 20  # fewer validation images and the temperature stays 1: a fit on two images is a guess
LOSS_TIE = 1e-9  # a held-out loss lower by less is rounding (logits that say nothing: every T ties), not evidence


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of ``logits / temperature`` (float64)."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature))


def reliability(confidence: np.ndarray, correct: np.ndarray) -> list[dict[str, float]]:
    """Per probability bin that has images: its range, images, mean top-1 probability and accuracy. The bars
    of a reliability diagram: a model whose probabilities are true is as accurate as it says in every bin."""
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    return [{"lo": b / CALIBRATION_BINS, "hi": (b + 1) / CALIBRATION_BINS, "images": int(np.sum(bins == b)),
             "confidence": float(confidence[bins == b].mean()), "accuracy": float(correct[bins == b].mean())}
            for b in np.unique(bins)]


def calibration(confidence: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    """Mean top-1 probability against accuracy, and the expected calibration error (ECE: |accuracy - mean
    probability| per probability bin, weighted by the bin's share of the images), with the bins.

    Accuracy alone hides what a deployment that thresholds on probability sees.
    """
    if not len(confidence):
        return {}
    bins = reliability(confidence, correct)
    ece = sum(abs(b["accuracy"] - b["confidence"]) * b["images"] for b in bins) / len(confidence)
    return {"mean_confidence": float(confidence.mean()), "accuracy": float(correct.mean()), "ece": float(ece),
            "bins": CALIBRATION_BINS, "reliability": bins}


def calibration_of_logits(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> dict[str, Any]:
    """:func:`calibration` of the probabilities ``softmax(logits / temperature)``."""
    probs = softmax(logits, temperature)
    return calibration(probs.max(axis=1), probs.argmax(axis=1) == labels)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean cross-entropy of ``logits / temperature``: what the fit minimises."""
    return _nll_at(logits, labels)(temperature)


def _nll_at(logits: np.ndarray, labels: np.ndarray) -> Callable[[float], float]:
    """The cross-entropy as a function of T, the per-image work done once: max(z / T) = max(z) / T for T > 0,
    so each T costs one exp over the logits (ImageNet's 50,000 x 1000 in about 0.2 s on 2 cores)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)  # <= 0: exp(z / T) never overflows
    picked = z[np.arange(len(labels)), labels]
    return lambda t: float(np.mean(np.log(np.exp(z / t).sum(axis=1)) - picked / t))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [T_MIN, T_MAX] that minimises the cross-entropy of ``logits / T``; 1.0 without images.

    The loss is convex in 1/T, so it has one minimum on the bracket and a golden-section search finds it.
    """
    if not len(labels):
        return 1.0
    loss = _nll_at(logits, labels)
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(math.exp(a)), loss(math.exp(b))
    for _ in range(FIT_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(math.exp(b))
    return math.exp((lo + hi) / 2)


def at_bound(temperature: float) -> bool:
    """True when a fit stopped at an end of the bracket [T_MIN, T_MAX]."""
    return not T_MIN * 1.01 < temperature < T_MAX / 1.01


@dataclass
class TemperatureFit:
    """A temperature for the card (an epoch's, or a refit's), and the figures behind it."""

    temperature: float = 1.0
    ece: float | None = None  # before: softmax(logits / baseline), all images
    heldout_ece: float | None = None  # after: each fold at the temperature fitted on the other folds
    kept: str | None = None  # why the temperature stayed the baseline; None when it was fitted
    heldout_confidence: float | None = None  # after: the mean top-1 probability, as heldout_ece
    baseline_loss: float | None = None  # the guard's two sides: mean loss at the baseline, all images,
    heldout_loss: float | None = None  # and on the held-out folds at their fitted temperatures


def choose_temperature(logits: np.ndarray, labels: np.ndarray, seed: int = 0, baseline: float = 1.0,
                       what: str = "validation") -> TemperatureFit:
    """Fit the temperature on all images, if it earns its place: it must lower the loss on held-out folds
    (each fold scored at the temperature fitted on the others) below that at ``baseline`` (the raw logits in
    training; the card's temperature when refitting one). A fit on a few images, or one that only matches noise,
    would otherwise make every probability the model states worse. ``what`` names the images in the reasons."""
    n, what = len(labels), f"{what} " if what else ""
    if not np.isfinite(logits).all():
        return TemperatureFit(baseline, kept=f"the {what}logits are not all finite")
    if n < MIN_FIT_IMAGES:
        ece = calibration_of_logits(logits, labels, baseline)["ece"] if n else None
        few = f"{n} {what}images are too few to fit it on (at least {MIN_FIT_IMAGES})"
        return TemperatureFit(baseline, ece, kept=few)
    ece = calibration_of_logits(logits, labels, baseline)["ece"]
    held, held_nll = _heldout(logits, labels, seed)
    base_nll = nll(logits, labels, baseline)
    if not held_nll < base_nll - LOSS_TIE:
        return TemperatureFit(baseline, ece, kept="a fitted temperature did not lower the loss on held-out folds",
                              baseline_loss=base_nll, heldout_loss=held_nll)
    return TemperatureFit(fit_temperature(logits, labels), ece, held["ece"], heldout_confidence=held["mean_confidence"],
                          baseline_loss=base_nll, heldout_loss=held_nll)


def _heldout(logits: np.ndarray, labels: np.ndarray, seed: int) -> tuple[dict[str, Any], float]:
    """Calibration and mean loss after temperature scaling, on images the temperature was not fitted on.

    The images are split in :data:`HELDOUT_FOLDS` random folds (one split: at 150 images its ECE moves by about
    0.01 from split to split); each fold's probabilities use the T fitted on the others.
    """
    n = len(labels)
    fold = np.random.default_rng(seed).permutation(n) % HELDOUT_FOLDS
    confidence, correct, loss = np.empty(n), np.empty(n, dtype=bool), 0.0
    for k in range(HELDOUT_FOLDS):
        test = fold == k
        t = fit_temperature(logits[~test], labels[~test])
        probs = softmax(logits[test], t)
        confidence[test], correct[test] = probs.max(axis=1), probs.argmax(axis=1) == labels[test]
        loss += nll(logits[test], labels[test], t) * test.sum() / n
    return calibration(confidence, correct), loss


REFIT = ("`edgetl calibrate` fits a temperature on labelled images like these (`edgetl train` fits one on its "
         "validation images where it helps)")


def calibration_note(cal: dict[str, Any], temperature: float = 1.0) -> str | None:
    """A sentence when the probabilities are far from how often the model is right, else None."""
    if not cal or abs(cal["mean_confidence"] - cal["accuracy"]) < MISCALIBRATED:
        return None
    way = "understate" if cal["mean_confidence"] < cal["accuracy"] else "overstate"
    if temperature != 1.0:  # fitted on other images: these are unlike them
        fix = (f"its temperature ({temperature:.3g}) was fitted on other images, so these differ from them: refit "
               "it on labelled images like these with `edgetl calibrate`")
    elif way == "understate":
        fix = f"train longer or with a higher --backbone-lr-mult; {REFIT}"
    else:
        fix = f"train with more data or --label-smoothing; {REFIT}"
    return (f"its probabilities {way} how often it is right (mean top-1 probability {cal['mean_confidence']:.2f}, "
            f"accuracy {cal['accuracy']:.2f}, ECE {cal['ece']:.3f}): mind it before thresholding on them; {fix}")
