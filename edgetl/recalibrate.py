"""Refit an artifact's temperature on labelled images like the ones it will see, and write it into the artifact.

``edgetl train`` fits the temperature on its validation set; deployed images often differ (another camera,
light or site), and then the stated probabilities drift from how often the model is right while its answers
stay as good. This refits T on the artifact's own logits over new labelled images, with training's guard (the
new T must lower the loss on held-out folds below the card's T), and changes nothing else: for any T > 0 the top
class of logits / T is that of the logits, so the artifact's answers, parity and speed are untouched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.calibration import calibration_of_logits, choose_temperature
from edgetl.card import REFIT_KEY, ModelCard
from edgetl.errors import EdgetlError


@dataclass
class Refit:
    """The temperature refit on a labelled folder: the figures before and after, and what was written."""

    artifact: str
    data: str
    images: int
    accuracy: float  # top-1, the same at any temperature
    old_temperature: float
    temperature: float  # the card's temperature from now on (the old one when kept)
    before: dict[str, Any]  # calibration at the old temperature, all images
    heldout_ece: float | None = None  # each fold at the temperature fitted on the others
    heldout_confidence: float | None = None
    kept: str | None = None  # why the old temperature stayed; None when a new one was fitted
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fitted(self) -> bool:
        """A new temperature earned its place (written unless --dry-run)."""
        return self.kept is None and self.temperature != self.old_temperature


def refit_temperature(artifact: str | Path, data: str | Path, *, device: str | None = None, batch_size: int = 32,
                      write: bool = True, progress: bool = True) -> Refit:
    """Fit the temperature of ``artifact`` on the labelled folder ``data``; with ``write``, store it in the
    artifact (see :func:`write_temperature`) when it earned its place."""
    from edgetl.evaluate import labelled_logits

    path = Path(artifact)
    refuse_unwritable(path)
    run = labelled_logits(path, data, device=device, batch_size=batch_size, progress=progress, label="calibrating")
    old = run.card.temperature
    fit = choose_temperature(run.logits, run.labels, baseline=old, what="")
    before = calibration_of_logits(run.logits, run.labels, old)
    refit = Refit(str(path), str(data), len(run.labels), before["accuracy"], old, fit.temperature, before,
                  fit.heldout_ece, fit.heldout_confidence, fit.kept, skipped=run.skipped)
    if write and refit.fitted:
        record = {"data": str(data), "images": refit.images, "ece_before": round(before["ece"], 4),
                  "heldout_ece": round(fit.heldout_ece or 0.0, 4), "previous": old,
                  "date": dt.date.today().isoformat()}
        card = dataclasses.replace(run.card, temperature=fit.temperature, extra={**run.card.extra, REFIT_KEY: record})
        refit.written = [str(p) for p in write_temperature(path, card)]
    return refit


def refuse_unwritable(path: Path) -> None:
    """An AOTInductor package compiles its card in: refuse before minutes of inference, not after."""
    from edgetl.runtime.loader import artifact_kind

    if artifact_kind(path) == "aoti":
        raise EdgetlError(f"{path}: an AOTInductor package holds its card inside the compiled package; calibrate "
                          "the run directory it came from, then re-export it with `edgetl export --aoti`")


def write_temperature(artifact: str | Path, card: ModelCard) -> list[Path]:
    """Store ``card`` (the artifact's own, with the new temperature) where the runtime reads the artifact's card.

    Run directory or ``.safetensors``: ``model.json``. ONNX: its ``metadata_props``, and the ``manifest.json``
    entry's sha256 and size, so ``edgetl info`` still vouches for the file. Engine: the ``<engine>.json`` record
    (the engine itself is untouched). Each write is atomic. Returns the files written.
    """
    from edgetl.io import dir_lock
    from edgetl.runtime.loader import artifact_kind

    path = Path(artifact)
    kind = artifact_kind(path)
    refuse_unwritable(path)
    folder = path if path.is_dir() else path.parent
    with dir_lock(folder, "training or exporting"):  # their writes would race this one
        if kind == "torch":
            from edgetl.checkpoint import resolve_checkpoint

            card_file = resolve_checkpoint(path)[1]
            card.save(card_file)
            return [card_file]
        if kind == "onnx":
            return [_write_onnx(path, card), *_rehash_manifest_entry(path)]
        return [_write_engine_record(path, card)]


def _write_onnx(path: Path, card: ModelCard) -> Path:
    import onnx

    from edgetl.export.onnx import set_metadata
    from edgetl.io import atomic_path

    model = onnx.load(str(path), load_external_data=False)  # weights kept in a side file stay there, unread
    set_metadata(model, card.to_metadata())
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def _rehash_manifest_entry(path: Path) -> list[Path]:
    """The export manifest's entry for ``path``: its new sha256 and size (the graph and weights are unchanged)."""
    from edgetl.export.manifest import MANIFEST_FILE
    from edgetl.io import atomic_write_json, read_json, sha256_file

    manifest = path.parent / MANIFEST_FILE
    if not manifest.is_file():
        return []
    data = read_json(manifest)
    listed = data.get("artifacts", []) if isinstance(data, dict) else []
    entries = [a for a in listed if isinstance(a, dict) and a.get("file") == path.name]
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
