"""Refit an artifact's temperature on labelled images like the ones it will see, and write it into the artifact.

``edgetl train`` fits the temperature on its validation set; deployed images often differ (another camera,
light or site), and then the stated probabilities drift from how often the model is right while its answers
stay as good. This refits T on the artifact's own logits over new labelled images, with training's guard (the
new T must lower the loss on held-out folds below the card's T), and changes nothing else: for any T > 0 the top
class of logits / T is that of the logits, so the artifact's answers and parity are untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.calibration import T_MIN, at_bound, calibration_of_logits, choose_temperature
from edgetl.card import REFIT_KEY, ModelCard
from edgetl.errors import EdgetlError


@dataclass
class Refit:
    """The temperature refit on a labelled folder: the figures before and after, and what was written."""

    artifact: str
    data: str  # what the images came from (DIR/val when DIR has one; a CSV's rows), absolute
    images: int
    accuracy: float  # top-1, the same at any temperature
    old_temperature: float
    temperature: float  # the card's temperature from now on (the old one when kept)
    before: dict[str, Any]  # calibration at the old temperature, all images
    loss_before: float | None = None  # mean loss at the old temperature, all images
    heldout_loss: float | None = None  # each half at the temperature fitted on the other: the guard's other side
    heldout_ece: float | None = None
    heldout_confidence: float | None = None
    kept: str | None = None  # why the old temperature stayed; None when a new one was fitted
    warning: str | None = None  # the images include ones the model trained on
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fitted(self) -> bool:
        """A new temperature earned its place (written unless --dry-run)."""
        return self.kept is None and self.temperature != self.old_temperature


def refit_temperature(artifact: str | Path, data: str | Path, *, device: str | None = None, batch_size: int = 32,
                      write: bool = True, progress: bool = True, split: str = "val") -> Refit:
    """Fit the temperature of ``artifact`` on the labelled folder ``data``; with ``write``, store it in the
    artifact (see :func:`write_temperature`) when it earned its place.

    With ``write`` the artifact's folder is locked from before the images run until the card is written, so a
    training or export cannot change the model under the fit, and an unwritable folder fails at once.
    """
    from edgetl.evaluate import labelled_logits

    path = Path(artifact)
    check_calibratable(path)
    with _locked(path) if write else contextlib.nullcontext():
        run = labelled_logits(path, data, device=device, batch_size=batch_size, progress=progress,
                              label="calibrating", split=split)
        refit = _fit(path, run.source, run.logits, run.labels, run.card.temperature)
        refit.skipped, refit.warning = run.skipped, run.warning
        if write and refit.fitted:
            record = {"data": refit.data, "images": refit.images, "ece_before": round(refit.before["ece"], 4),
                      "heldout_ece": round(refit.heldout_ece, 4) if refit.heldout_ece is not None else None,
                      "previous": refit.old_temperature, "date": dt.date.today().isoformat()}
            card = dataclasses.replace(run.card, temperature=refit.temperature,
                                       extra={**run.card.extra, REFIT_KEY: record})
            refit.written = [str(p) for p in _write(path, card)]
    return refit


def _fit(path: Path, source: str, logits: Any, labels: Any, old: float) -> Refit:
    """Training's guarded fit against the card's temperature, refusing a fit that ran to an end of its range."""
    fit = choose_temperature(logits, labels, baseline=old, what="")
    before = calibration_of_logits(logits, labels, old)
    kept = fit.kept
    if kept is None and at_bound(fit.temperature):
        kept = (f"the fit ran to the end of its range (T {fit.temperature:.3g}): these images say every answer is "
                "near certain (it gets them all, or almost all, right); add photos it gets wrong"
                if fit.temperature < 2 * T_MIN else
                f"the fit ran to the end of its range (T {fit.temperature:.3g}): these images say its answers are "
                "no better than chance; check that the folders are labelled with the model's classes")
    after = kept is None
    return Refit(artifact=str(path), data=source, images=len(labels), accuracy=before["accuracy"],
                 old_temperature=old, temperature=fit.temperature if after else old, before=before,
                 loss_before=fit.baseline_loss, heldout_loss=fit.heldout_loss,
                 heldout_ece=fit.heldout_ece if after else None,
                 heldout_confidence=fit.heldout_confidence if after else None, kept=kept)


def check_calibratable(path: Path) -> None:
    """Refuse, before minutes of inference, an artifact whose card cannot take a temperature."""
    from edgetl.runtime.loader import artifact_kind

    kind = artifact_kind(path)
    if kind == "aoti":
        raise EdgetlError(f"{path}: an AOTInductor package holds its card inside the compiled package; calibrate "
                          "the run directory it came from, then re-export it with `edgetl export --aoti`")
    if kind == "torch" and path.is_file() and path.name != "best.safetensors" \
            and (path.parent / "best.safetensors").is_file():
        raise EdgetlError(f"{path}: model.json beside it is the card of best.safetensors too; calibrate the run "
                          f"directory {path.parent} (its best weights), or copy this checkpoint to a folder of its own")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The artifact's folder, held as training and export hold it; an unwritable folder is refused here."""
    from edgetl.io import dir_lock

    folder = path if path.is_dir() else path.resolve().parent
    try:
        with dir_lock(folder, "calibrating"):
            yield
    except OSError as exc:
        raise EdgetlError(f"{folder}: cannot write there ({exc.strerror}); copy the artifact to a folder you can "
                          "write, or only look with --dry-run") from None


def write_temperature(artifact: str | Path, card: ModelCard) -> list[Path]:
    """Store ``card`` (the artifact's own, with the new temperature) where the runtime reads the artifact's card.

    Run directory or ``best.safetensors``: ``model.json``. ONNX: its ``metadata_props``, and the ``manifest.json``
    entry's sha256 and size, so ``edgetl info`` still vouches for the file. Engine: the ``<engine>.json`` record
    (the engine itself is untouched). Each file is replaced atomically. Returns the files written.
    """
    path = Path(artifact)
    check_calibratable(path)
    with _locked(path):
        return _write(path, card)


T_BOUND_METRICS = ("test_ece", "test_temperature")  # training's test figures that hold only at its T


def _write(path: Path, card: ModelCard) -> list[Path]:
    from edgetl.runtime.loader import artifact_kind

    if card.metrics.get("test_temperature") != card.temperature:  # the test ECE was at another (or an unknown) T
        card = dataclasses.replace(card, metrics={k: v for k, v in card.metrics.items() if k not in T_BOUND_METRICS})
    kind = artifact_kind(path)
    if kind == "torch":
        from edgetl.checkpoint import resolve_checkpoint

        card_file = resolve_checkpoint(path)[1]
        card.save(card_file)
        return [card_file]
    if kind == "onnx":
        return _write_onnx(path, card)
    if kind == "tensorrt":
        return [_write_engine_record(path, card)]
    raise EdgetlError(f"{path}: a {kind} artifact has no card edgetl calibrate can write")


def _write_onnx(path: Path, card: ModelCard) -> list[Path]:
    """The card in the file's metadata; the manifest entry re-hashed only if it described the file before."""
    import onnx

    from edgetl.export.onnx import set_metadata
    from edgetl.io import atomic_path, sha256_file

    vouched = sha256_file(path)
    model = onnx.load(str(path), load_external_data=False)  # weights kept in a side file stay there, unread
    set_metadata(model, card.to_metadata())
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return [path, *_rehash_manifest_entry(path, vouched)]


def _rehash_manifest_entry(path: Path, vouched: str) -> list[Path]:
    """The export manifest's entry for ``path``: its new sha256 and size, when it vouched for the file as it was
    (sha256 ``vouched``). One that did not (the file was replaced after export) is left to keep saying so."""
    from edgetl.export.manifest import MANIFEST_FILE
    from edgetl.io import atomic_write_json, read_json, sha256_file

    manifest = path.resolve().parent / MANIFEST_FILE
    if not manifest.is_file():
        return []
    data = read_json(manifest)
    listed = data.get("artifacts", []) if isinstance(data, dict) else []
    entries = [a for a in listed if isinstance(a, dict) and a.get("file") == path.resolve().name
               and a.get("sha256") == vouched]
    for entry in entries:
        entry["sha256"], entry["bytes"] = sha256_file(path), path.stat().st_size
    if not entries:
        return []
    atomic_write_json(manifest, data)
    return [manifest]


def _write_engine_record(path: Path, card: ModelCard) -> Path:
    from edgetl.io import atomic_write_json, read_json

    sidecar = path.with_name(path.name + ".json")
    record = read_json(sidecar) if sidecar.is_file() else {}
    if not isinstance(record, dict):
        raise EdgetlError(f"{sidecar}: not an edgetl engine record (expected a JSON object); re-export the engine")
    atomic_write_json(sidecar, {**record, "card": card.to_dict()})
    return sidecar
