"""Evaluate any artifact on a labelled folder: accuracy, per-class scores, confusion, worst mistakes.

Images go through the runtime :class:`~edgetl.runtime.predictor.Predictor`, i.e. the card's own eval
preprocessing (``eval_array``), so a run directory, an ONNX file or an engine are judged alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.calibration import calibration, log_softmax, softmax
from edgetl.card import ModelCard
from edgetl.errors import EdgetlError
from edgetl.io import atomic_path, atomic_write_json


@dataclass
class ClassScores:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Mistake:
    path: str
    true: str
    predicted: str
    confidence: float


@dataclass
class EvalReport:
    """An artifact scored on a labelled folder: top-1/5, loss, per-class figures, confusion and worst mistakes.

    ``macro``: precision, recall and F1 averaged over the classes that have images, each class counting
    once (macro recall is balanced accuracy): what top-1 hides when a few large classes dominate.
    """

    artifact: str
    data: str
    images: int
    top1: float
    top5: float | None
    loss: float
    classes: list[str]
    per_class: list[ClassScores]
    confusion: list[list[int]]
    worst: list[Mistake] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    macro: dict[str, float] = field(default_factory=dict)
    class_map: dict[str, str] | None = None  # folder → model class, for folders named the ImageNet way
    calibration: dict[str, Any] = field(default_factory=dict)  # edgetl.calibration.calibration, and temperature
    top1_ci: tuple[float, float] | None = None  # 95% Wilson interval of top-1 (%): what another sample could give
    warning: str | None = None  # some images are the model's training images: top-1 reads high

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the confusion matrix is shared, not copied (``asdict`` took seconds at 1000 classes)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["per_class"] = [asdict(c) for c in self.per_class]
        out["worst"] = [asdict(m) for m in self.worst]
        return out

    def weakest(self, n: int) -> list[ClassScores]:
        """The ``n`` classes with images that score lowest (F1, then recall): where to look first."""
        present = [c for c in self.per_class if c.support > 0]
        return sorted(present, key=lambda c: (c.f1, c.recall, c.name))[:n]


def wilson_interval(right: int, images: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of an accuracy, in percent: how far top-1 on ``images`` photos like these could
    fall from the one measured. Unlike the normal approximation it stays inside 0–100 at 0 or all right."""
    if images <= 0:
        return None
    p, z2 = right / images, z * z
    centre, half = p + z2 / (2 * images), z * math.sqrt(p * (1 - p) / images + z2 / (4 * images * images))
    scale = 100.0 / (1 + z2 / images)
    return max(0.0, (centre - half) * scale), min(100.0, (centre + half) * scale)


def interval_text(ci: tuple[float, float] | None, unit: str = "") -> str:
    """" (95% CI lo–hi)" for a top-1, or nothing."""
    return f" (95% CI {ci[0]:.1f}–{ci[1]:.1f}{unit})" if ci else ""


def report_from_logits(logits: np.ndarray, labels: np.ndarray, classes: list[str], paths: list[str],
                       worst: int = 10, artifact: str = "", data: str = "", temperature: float = 1.0) -> EvalReport:
    """All metrics from a (N, C) logit matrix and the true labels.

    ``loss`` is the cross-entropy of the logits as they are (training's ``val_loss``); probabilities (the worst
    mistakes' confidence, ``calibration``) are ``softmax(logits / temperature)``, as the Predictor states them.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    logp = log_softmax(logits.astype(np.float64))
    pred = logp.argmax(axis=1)
    n = len(labels)
    top1 = 100.0 * float((pred == labels).mean()) if n else 0.0
    top5 = None
    if len(classes) > 5:  # with 5 classes or fewer, every top-5 holds the label
        top5_idx = np.argpartition(-logp, 4, axis=1)[:, :5]
        top5 = 100.0 * float((top5_idx == labels[:, None]).any(axis=1).mean())
    loss = float(-logp[np.arange(n), labels].mean()) if n else 0.0
    ids = list(range(len(classes)))
    prec, rec, f1, support = precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    per_class = [ClassScores(c, float(prec[i]), float(rec[i]), float(f1[i]), int(support[i]))
                 for i, c in enumerate(classes)]
    present = support > 0
    macro = {"precision": float(prec[present].mean()), "recall": float(rec[present].mean()),
             "f1": float(f1[present].mean()), "classes": int(present.sum())} if present.any() else {}
    confusion = confusion_matrix(labels, pred, labels=ids).tolist()
    wrong = np.flatnonzero(pred != labels)
    conf = softmax(logits, temperature).max(axis=1)
    order = wrong[np.argsort(-conf[wrong])][:worst]
    mistakes = [Mistake(paths[i], classes[labels[i]], classes[pred[i]], float(conf[i])) for i in order]
    cal = calibration(conf, pred == labels)
    return EvalReport(artifact, data, n, top1, top5, loss, list(classes), per_class, confusion, mistakes,
                      macro=macro, calibration={**cal, "temperature": temperature} if cal else {},
                      top1_ci=wilson_interval(int((pred == labels).sum()), n))


NAMED_MAX = 40  # classes whose names label the confusion plot; past that, names would overlap into a smear
COUNTS_MAX = 30  # classes whose cells show their counts
TICK_CHARS = 24  # a longer class name is cut in the plot (eval.json keeps it whole)


def _tick(name: str) -> str:
    return name if len(name) <= TICK_CHARS else name[:TICK_CHARS - 1] + "…"


def plot_confusion(report: EvalReport, path: str | Path) -> None:
    """Row-normalised confusion matrix as PNG: names and counts while they fit, class indices past that."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(report.confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(report.classes)
    size = min(4 + 0.45 * k, 20) if k <= NAMED_MAX else 12
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if k <= NAMED_MAX:
        ax.set_xticks(range(k), [_tick(c) for c in report.classes], rotation=90 if k > 4 else 0)
        ax.set_yticks(range(k), [_tick(c) for c in report.classes])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    else:  # too many names to read: class indices, in the order of eval.json's "classes"
        ax.set_xlabel("predicted (class index, as in eval.json)")
        ax.set_ylabel("true (class index)")
    ax.set_title(f"top-1 {report.top1:.1f}% on {report.images} images")
    if k <= COUNTS_MAX:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8 if k > 10 else 12,
                        color="white" if norm[i, j] > 0.5 else "black")
    with warnings.catch_warnings():  # names in scripts the font lacks (CJK): boxes in the plot, not 2 lines each
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_reliability(report: EvalReport, path: str | Path) -> None:
    """Reliability diagram as PNG: accuracy per probability bin against the diagonal a calibrated model sits on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cal = report.calibration
    bins = cal.get("reliability", [])
    fig, ax = plt.subplots(figsize=(5.5, 5.4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="as sure as it is right")
    ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=[b["hi"] - b["lo"] for b in bins],
           align="edge", edgecolor="black", alpha=0.7, label="accuracy in the bin")
    ax.plot([b["confidence"] for b in bins], [b["confidence"] for b in bins], "o", color="tab:red", ms=4,
            label="mean probability in the bin")
    for b in bins:
        ax.text((b["lo"] + b["hi"]) / 2, min(b["accuracy"], 0.93) + 0.02, str(b["images"]), ha="center", fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="top-1 probability (as edgetl predict states it)", ylabel="accuracy")
    ece = f"ECE {cal['ece']:.3f}, " if cal else ""
    ax.set_title(f"{ece}temperature {cal.get('temperature', 1.0):.3g}; images per bin above the bars", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=7, frameon=False)  # off the bars
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


@dataclass
class LabelledLogits:
    """An artifact's logits over a labelled folder, as deployment computes them, and what was left out."""

    logits: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) int64
    paths: list[str]
    skipped: list[tuple[str, str]]
    card: ModelCard
    class_map: dict[str, str] | None = None
    source: str = ""  # what was read (the split's folder, the CSV's rows), for the report
    warning: str | None = None  # some images are the model's training images


def labelled_logits(artifact: str | Path, data: str | Path, *, device: str | None = None, batch_size: int = 32,
                    progress: bool = True, label: str = "evaluating", split: str = "val") -> LabelledLogits:
    """Run ``artifact`` over the ``split`` images of ``data``: a folder of ``DIR/<class>/…``, a split of
    ``DIR/{train,val,test}/<class>/…`` or a CSV's rows (:func:`edgetl.data.labelled.find_labelled`).

    Files the folder check passed but a full decode refuses (a JPEG truncated past the part the check reads)
    are skipped with the reason, as the check's own finds are.
    """
    from edgetl.data.labelled import find_labelled
    from edgetl.data.trained_on import trained_on
    from edgetl.runtime.loader import deployed_runner
    from edgetl.runtime.predictor import logits_of_files

    with deployed_runner(artifact, device=device) as runner:  # as parity reads it: ImageNet heads map "ants/"
        found = find_labelled(Path(data), runner.card.classes, split=split, trained=trained_on(artifact))
        skipped = found.skipped
        if not found.paths:
            first = f"; {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
            raise EdgetlError(f"{data}: none of its {len(skipped)} file(s) is a usable image{first}; "
                              "point --data at a folder of photos in DIR/<class>/ folders")
        if found.labels is None:
            raise EdgetlError(f"{data}: {found.note or 'images without class folders'}; this needs labelled "
                              "images: put them in DIR/<class>/ folders named by the model's classes")
        (logits,), unreadable, used = logits_of_files([runner], found.paths, batch_size, progress, label)
        card = runner.card
    if not used:
        raise EdgetlError(f"{data}: none of its images decodes; {unreadable[0][0]}: {unreadable[0][1]}")
    labels = np.asarray([found.labels[i] for i in used], dtype=np.int64)
    return LabelledLogits(logits, labels, [str(found.paths[i]) for i in used],
                          [(str(p), reason) for p, reason in skipped] + unreadable, card, found.class_map,
                          found.source, found.warning)


def evaluate_artifact(artifact: str | Path, data: str | Path, *, device: str | None = None, batch_size: int = 32,
                      worst: int = 10, progress: bool = True, split: str = "val") -> EvalReport:
    """Score ``artifact`` on the ``split`` images of ``data``: see :func:`labelled_logits` for what it reads."""
    run = labelled_logits(artifact, data, device=device, batch_size=batch_size, progress=progress, split=split)
    report = report_from_logits(run.logits, run.labels, run.card.classes, run.paths, worst, artifact=str(artifact),
                                data=run.source or str(data), temperature=run.card.temperature)
    report.skipped, report.class_map, report.warning = run.skipped, run.class_map, run.warning
    return report


def save_report(report: EvalReport, out_dir: str | Path, prefix: str = "") -> tuple[Path, Path, Path]:
    """``<prefix>eval.json``, ``<prefix>confusion.png`` and ``<prefix>reliability.png`` in ``out_dir``.

    A prefix (``model.int8.``) keeps the reports of several artifacts in one export folder apart.
    """
    out = Path(out_dir)
    paths = out / f"{prefix}eval.json", out / f"{prefix}confusion.png", out / f"{prefix}reliability.png"
    atomic_write_json(paths[0], report.to_dict())
    plot_confusion(report, paths[1])
    plot_reliability(report, paths[2])
    return paths
