"""Parity: does a candidate artifact still answer like the reference model?

``compare_logits`` computes the figures on logits already produced by two runners over the same
images; ``GATES`` holds the default pass/fail rules per precision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.calibration import softmax
from edgetl.errors import EdgetlError, class_difference

if TYPE_CHECKING:
    from edgetl.runtime.base import Runner


CENTERED_MIN_IMAGES = 8  # below this the mean over the images is too noisy to take away
# Logits over the card's temperature: a candidate within this of every reference logit / T answers the same
# probabilities to about 1%, so it follows the reference whatever its centered cosine. A barely trained model
# whose logits hardly change from image to image (EfficientViT-M0 after 2 epochs from scratch: 1e-5) has centered
# logits made of rounding error, and a faithful INT8 copy (max |diff| 6e-4) scored 0.03 there.
CENTERED_ABS_TOL = 0.01
# Points of top-1 below which two figures are the same: a drop is a whole number of images times 100 / n, but
# (1 - 0.99) * 100 is 1.0000000000000009 in floating point, and "drop <= 1 point" must pass 1 image in 100.
POINTS_EPS = 1e-9


@dataclass(frozen=True)
class Gate:
    """Pass/fail rule; None disables a check."""

    min_agreement: float | None = None  # top-1 agreement with the reference, fraction
    max_abs_diff: float | None = None  # max abs logit difference, per unit of logit scale (see check_gate)
    max_accuracy_drop: float | None = None  # top-1 accuracy drop in points (needs labels)
    min_centered_cosine: float | None = None  # how well the logits follow the reference's from image to image


GATES: dict[str, Gate] = {
    "fp32": Gate(min_agreement=1.0, max_abs_diff=1e-4),
    "fp16": Gate(min_agreement=0.995),
    # The floor catches a collapsed INT8 model (a ViT with its attention MatMuls quantised) that the drop misses
    # where the reference is weak: 12% accuracy before and after. ImageNet Lite0's INT8 scores 0.996; answering
    # the reference's mean logits for every image scores 0.
    "int8": Gate(max_accuracy_drop=1.0, min_centered_cosine=0.9),
}


@dataclass
class ParityStats:
    """How closely a candidate's logits follow the reference's, and accuracy against labels when known."""

    n: int
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    centered_cosine: float | None  # see centered_cosine; None on fewer than CENTERED_MIN_IMAGES images
    top1_agreement: float
    top5_overlap: float | None  # None with 5 classes or fewer, where it is 100% whatever the model does
    ref_accuracy: float | None = None
    cand_accuracy: float | None = None
    accuracy_drop: float | None = None  # points (percent)
    lost: int | None = None  # images the reference gets right and the candidate wrong
    gained: int | None = None  # and the other way: the drop is (lost - gained) images, each side its own count
    worst: list[int] = field(default_factory=list)  # indices where the candidate differs most
    ref_absmax: float = 0.0  # largest |logit| of the reference: the scale of max_abs_diff's gate
    temperature: float = 1.0  # the reference card's: probabilities are softmax(logits / temperature)
    max_prob_diff: float = 0.0  # largest |difference| of a class probability, as the Predictor states them

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_logits(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None = None,
                   n_worst: int = 10, temperature: float = 1.0) -> ParityStats:
    """Figures for ``cand`` against ``ref`` (N x C logits), with accuracy when ``labels`` are given and
    probabilities at ``temperature`` (the card's).

    Logits with inf or NaN give inf / NaN figures, without numpy's warnings: the caller says it in words.
    """
    ref = np.asarray(ref, np.float64)
    cand = np.asarray(cand, np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"logit shapes differ: reference {ref.shape}, candidate {cand.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        return _figures(ref, cand, labels, n_worst, temperature)


def _figures(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None, n_worst: int,
             temperature: float) -> ParityStats:
    diff = np.abs(ref - cand)
    prob_diff = np.abs(softmax(ref, temperature) - softmax(cand, temperature)) if ref.size else diff
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cos = np.sum(ref * cand, axis=1) / np.maximum(norms, 1e-12)
    ref_top1, cand_top1 = ref.argmax(1), cand.argmax(1)
    overlap = None
    if ref.shape[1] > 5:
        ref_k, cand_k = np.argsort(-ref, 1)[:, :5], np.argsort(-cand, 1)[:, :5]
        overlap = float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ref_k, cand_k, strict=True)])) \
            if len(ref) else 1.0
    per_image = diff.max(axis=1) + (ref_top1 != cand_top1) * 1e6  # disagreements first
    stats = ParityStats(
        n=len(ref), max_abs_diff=float(diff.max(initial=0.0)), mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        cosine=float(cos.mean()) if len(cos) else 1.0, centered_cosine=centered_cosine(ref, cand),
        top1_agreement=float(np.mean(ref_top1 == cand_top1)) if len(ref) else 1.0,
        top5_overlap=overlap, worst=[int(i) for i in np.argsort(-per_image)[:n_worst]],
        ref_absmax=float(np.abs(ref).max(initial=0.0)), temperature=temperature,
        max_prob_diff=float(prob_diff.max(initial=0.0)),
    )
    if labels is not None and len(labels):
        labels = np.asarray(labels)
        stats.ref_accuracy = float(np.mean(ref_top1 == labels) * 100)
        stats.cand_accuracy = float(np.mean(cand_top1 == labels) * 100)
        stats.accuracy_drop = stats.ref_accuracy - stats.cand_accuracy
        stats.lost = int(np.sum((ref_top1 == labels) & (cand_top1 != labels)))
        stats.gained = int(np.sum((ref_top1 != labels) & (cand_top1 == labels)))
    return stats


def diff_limit(stats: ParityStats, max_abs_diff: float) -> float:
    """``max_abs_diff`` per unit of the reference's largest |logit| (at least 1): float32 rounding grows with
    the values summed, so a ViT whose logits reach 21 differed by 2.7e-4 from its exact ONNX export."""
    return max_abs_diff * max(1.0, stats.ref_absmax)


def gate_record(gate: Gate, stats: ParityStats) -> dict[str, Any]:
    """The gate as JSON, with the max abs diff it applied to these logits: the gate's value is per unit of the
    reference's largest |logit|, so the figure it was held to is stated, not left to be worked out."""
    out = asdict(gate)
    if gate.max_abs_diff is not None:
        out["max_abs_diff_applied"] = diff_limit(stats, gate.max_abs_diff)
    return out


def centered_cosine(ref: np.ndarray, cand: np.ndarray) -> float | None:
    """Mean per-image cosine of both logits, each less its own mean over the classes (softmax ignores a shift
    shared by all classes), then less the reference's mean over the images.

    Raw logits share a per-class offset that dominates a weakly trained model's: a candidate that answers the
    same logits for every image keeps a raw cosine near 1. Less the offset, only what follows the reference from
    image to image is left, and that candidate scores 0.
    """
    if len(ref) < CENTERED_MIN_IMAGES:
        return None
    ref = ref - ref.mean(axis=1, keepdims=True)
    cand = cand - cand.mean(axis=1, keepdims=True)
    mean = ref.mean(axis=0, keepdims=True)
    a, b = ref - mean, cand - mean
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))


def check_gate(stats: ParityStats, gate: Gate) -> list[str]:
    """The reasons ``stats`` fails ``gate`` (empty when it passes)."""
    fails = []
    if gate.min_agreement is not None and stats.top1_agreement < gate.min_agreement:
        fails.append(f"top-1 agreement {stats.top1_agreement:.2%} < {gate.min_agreement:.2%}")
    if gate.max_abs_diff is not None and stats.max_abs_diff > diff_limit(stats, gate.max_abs_diff):
        scale = f" × {stats.ref_absmax:.3g} (largest |reference logit|)" if stats.ref_absmax > 1 else ""
        fails.append(f"max abs diff {stats.max_abs_diff:.2e} > {gate.max_abs_diff:.0e}{scale}")
    if gate.max_accuracy_drop is not None and stats.accuracy_drop is not None \
            and stats.accuracy_drop > gate.max_accuracy_drop + POINTS_EPS:
        net = round(stats.accuracy_drop * stats.n / 100)  # on few images one photo is many points: say how many
        swaps = f"{stats.lost} right → wrong, {stats.gained} wrong → right"
        fails.append(f"top-1 drop {stats.accuracy_drop:.2f} pts > {gate.max_accuracy_drop:.2f} "
                     f"({net} more wrong of {stats.n} images: {swaps})")
    elif gate.max_accuracy_drop is not None and stats.accuracy_drop is None:
        disagree = (1.0 - stats.top1_agreement) * 100.0  # without labels: an upper bound on the drop
        if disagree > gate.max_accuracy_drop + POINTS_EPS:
            fails.append(f"top-1 disagreement {disagree:.2f} pts > {gate.max_accuracy_drop:.2f} (no labels: "
                         "an upper bound on the drop)")
    floor, centered = gate.min_centered_cosine, stats.centered_cosine
    if floor is not None and centered is not None and centered < floor \
            and stats.max_abs_diff / stats.temperature > CENTERED_ABS_TOL:
        fails.append(f"centered cosine {centered:.4f} < {floor} (the logits no longer follow the reference's from "
                     "image to image)")
    return fails


# --- the driver: run a reference and candidates over the same images, each with its own preprocessing ---

GATE_FIELDS = ("min_agreement", "max_abs_diff", "max_accuracy_drop", "min_centered_cosine")


def gate_for(precision: str, overrides: dict[str, float | None] | None = None) -> Gate:
    """The default gate of ``precision`` ("mixed" is judged as fp16), with ``overrides`` applied.

    INT8 is gated on the accuracy drop against labels; without labels ``check_gate`` judges the top-1
    disagreement with the reference against the same budget (1 point = 99% agreement). An override
    ``field: value`` changes that check in the gates that have it (loosening FP32's max diff adds no diff
    check to INT8); ``"int8.field": value`` sets it for one precision, and ``None`` there drops the check.
    """
    key = {"mixed": "fp16"}.get(precision, precision)
    if key not in GATES:
        raise ValueError(f"no default gate for precision {precision!r}; choose one of {', '.join(GATES)}")
    gate = asdict(GATES[key])
    scoped = []
    for name, value in (overrides or {}).items():
        scope, _, field_name = name.rpartition(".")
        if field_name not in GATE_FIELDS or (scope and scope not in GATES):
            raise ValueError(f"unknown gate field {name!r}; choose from {', '.join(GATE_FIELDS)}, optionally "
                             f"prefixed by a precision ({', '.join(GATES)}), e.g. int8.max_abs_diff")
        if scope == key:
            scoped.append((field_name, value))
        elif not scope and value is not None and gate[field_name] is not None:
            gate[field_name] = value
    gate.update(scoped)  # a precision's own setting wins over the global one
    return Gate(**gate)


@dataclass
class CandidateResult:
    """One candidate's figures, its gate and verdict, and the images where it departs most."""

    artifact: str
    runner: dict[str, Any]
    gate: Gate
    stats: ParityStats
    fails: list[str]
    worst: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.fails

    def to_dict(self) -> dict[str, Any]:
        stats = self.stats.to_dict()
        stats.pop("worst")
        return {"artifact": self.artifact, **self.runner, "gate": gate_record(self.gate, self.stats),
                "passed": self.passed,
                "fails": self.fails, "stats": stats, "worst_images": self.worst}


@dataclass
class ParityReport:
    """Every candidate judged against the reference on the same images; ``passed`` when all gates hold."""

    reference: dict[str, Any]
    candidates: list[CandidateResult]
    images: int
    labelled: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)
    class_map: dict[str, str] | None = None
    note: str | None = None
    warning: str | None = None  # see one_class_reference
    data: str = ""  # what was read: the folder, the split's folder, a CSV's rows
    trained_on: str | None = None  # some images are the model's training images: accuracy reads high

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "edgetl.parity/1", "passed": self.passed, "images": self.images,
                "labelled": self.labelled, "reference": self.reference,
                "candidates": [c.to_dict() for c in self.candidates],
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                **({"class_map": self.class_map} if self.class_map else {}),
                **({"note": self.note} if self.note else {}),
                **({"warning": self.warning} if self.warning else {}),
                **({"data": self.data} if self.data else {}),
                **({"trained_on": self.trained_on} if self.trained_on else {})}


def describe_runner(runner: Runner, artifact: str) -> dict[str, Any]:
    info = runner.info
    return {"artifact": artifact, "backend": info.backend, "precision": info.precision, "device": info.device,
            "provider": info.details.get("provider"), "optimization": info.details.get("optimization"),
            "int8_target": info.details.get("int8_target")}


def one_class_reference(ref: np.ndarray, classes: list[str]) -> str | None:
    """Why the figures say little when the reference answers one class for every image, else None.

    Such a reference (a frozen random backbone, an untrained head, images all of one kind) makes any
    candidate agree 100%: its gates pass whatever the artifact computes.
    """
    top1 = np.unique(ref.argmax(1)) if len(ref) else np.zeros(0, int)
    if len(ref) < 8 or len(classes) < 2 or len(top1) != 1:
        return None
    return (f"the reference answers {classes[int(top1[0])]!r} for all {len(ref)} images, so agreement says little; "
            "check that it is the trained model and that the images cover several classes")


def _worst_images(stats: ParityStats, ref: np.ndarray, cand: np.ndarray, paths: list[str],
                  labels: np.ndarray | None, classes: list[str]) -> list[dict[str, Any]]:
    out = []
    for i in stats.worst:
        r, c = int(ref[i].argmax()), int(cand[i].argmax())
        out.append({"path": paths[i], "label": classes[int(labels[i])] if labels is not None else None,
                    "reference_top1": classes[r], "candidate_top1": classes[c], "agrees": r == c,
                    "max_abs_diff": float(np.abs(ref[i].astype(np.float64) - cand[i]).max())})
    return out


def _candidate_gate(artifact: str, precision: str, overrides: dict[str, float | None] | None) -> Gate:
    """``gate_for`` the candidate, refused up front (before any image runs) when its precision is unknown."""
    if {"mixed": "fp16"}.get(precision, precision) not in GATES:
        raise EdgetlError(f"{artifact}: its precision is not recorded ({precision!r}), so no gate fits it; keep the "
                          f"{Path(artifact).name}.json `edgetl export` wrote beside it, or re-export it")
    return gate_for(precision, overrides)


def run_parity(reference: Runner, candidates: list[tuple[str, Runner]], paths: list[Any], labels: list[int] | None,
               reference_artifact: str = "reference", overrides: dict[str, float | None] | None = None,
               batch_size: int = 32, n_worst: int = 10, progress: bool = True) -> ParityReport:
    """Run ``reference`` and each (artifact, runner) candidate over ``paths`` and judge each against its gate."""
    from edgetl.runtime.predictor import logits_of_files

    classes = reference.card.classes
    for artifact, runner in candidates:
        if runner.card.classes != classes:
            raise EdgetlError(f"{artifact}: its classes differ from the reference's "
                              f"({class_difference(runner.card.classes, classes, 'it', 'the reference')}); compare "
                              "artifacts of the same model")
    gates = [_candidate_gate(artifact, runner.info.precision, overrides) for artifact, runner in candidates]
    logits, skipped, used = logits_of_files([reference, *(r for _, r in candidates)], paths, batch_size,
                                            progress, label="parity")
    if not used:
        raise EdgetlError("no readable images to compare on; check --data")
    used_paths = [str(paths[i]) for i in used]
    lab = np.asarray([labels[i] for i in used]) if labels is not None else None
    results = []
    for (artifact, runner), cand, gate in zip(candidates, logits[1:], gates, strict=True):
        stats = compare_logits(logits[0], cand, lab, n_worst=n_worst, temperature=reference.card.temperature)
        results.append(CandidateResult(artifact, describe_runner(runner, artifact), gate, stats,
                                       check_gate(stats, gate),
                                       _worst_images(stats, logits[0], cand, used_paths, lab, classes)))
    return ParityReport(describe_runner(reference, reference_artifact), results, len(used), lab is not None,
                        skipped, warning=one_class_reference(logits[0], classes))


def compare_artifacts(reference: Path, candidates: list[Path], data: Path, device: str | None = None,
                      provider: str | None = None, limit: int | None = None,
                      overrides: dict[str, float | None] | None = None, batch_size: int = 32, n_worst: int = 10,
                      progress: bool = True, split: str = "val") -> ParityReport:
    """Every candidate file against the reference file on ``data``'s images, each in its deployed numerics.

    ``data`` and ``split`` read as :func:`edgetl.data.labelled.find_labelled` reads them, for the run behind
    the reference (else a candidate's). ``provider`` applies to the .onnx candidates. The report lists every
    file left out, the folder → class mapping used for labels, and why a folder of class folders gave none.
    """
    from contextlib import ExitStack

    from edgetl.data.labelled import find_labelled
    from edgetl.data.trained_on import trained_on
    from edgetl.runtime.loader import artifact_kind, deployed_runner

    trained = next((t for t in map(trained_on, [reference, *candidates]) if t is not None), None)
    with ExitStack() as stack:
        ref = stack.enter_context(deployed_runner(reference, device, None))
        images = find_labelled(data, ref.card.classes, limit, split=split, trained=trained)
        runners = [(str(p), stack.enter_context(deployed_runner(
            p, device, provider if artifact_kind(p) == "onnx" else None))) for p in candidates]
        report = run_parity(ref, runners, images.paths, images.labels, reference_artifact=str(reference),
                            overrides=overrides, batch_size=batch_size, n_worst=n_worst, progress=progress)
    report.skipped = [(str(p), r) for p, r in images.skipped] + report.skipped
    report.class_map, report.data, report.trained_on = images.class_map, images.source, images.warning
    if images.note:
        report.note = (f"{images.note}; INT8 is gated on top-1 disagreement with the reference "
                       f"(<= {GATES['int8'].max_accuracy_drop:g} pts = agreement >= 99%)")
    return report


