"""Engine provenance without TensorRT: the sidecar / manifest entry the exporter writes beside an engine.

An engine only runs on the TensorRT version and GPU it was built for, so the exporter records
``{"tensorrt", "gpu", "compute_capability", "card"}`` for each engine; this module finds that record
(``<engine>.json`` or the ``manifest.json`` entry whose ``file`` names the engine) so ``edgetl info`` can
describe an engine on a machine without TensorRT, and the runner can refuse a mismatched one up front.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgetl.card import CARD_SCHEMA, METADATA_KEY, ModelCard
from edgetl.errors import EdgetlError
from edgetl.io import read_json

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def rebuild_hint(path: Path) -> str:
    """How to build ``path`` again here: the export's own rebuild lines when its manifest is beside it."""
    build = _engine_build(path)
    edgetl = build.get("edgetl") or "edgetl export <run> --engine"
    precision = path.name.removeprefix("model.").removesuffix(path.suffix)
    lines = build.get("trtexec")
    trtexec = (lines.get(precision) if isinstance(lines, dict) else None) or (
        f"trtexec --onnx={path.with_suffix('.onnx').name} --saveEngine={path.name} --stronglyTyped")
    return f"rebuild it on this machine: `{edgetl}` (or, in the export folder, `{trtexec}`)"


def _engine_build(path: Path) -> dict[str, Any]:
    """The ``engine_build`` entry of the manifest beside ``path`` (empty when there is none or it is unreadable)."""
    try:
        data = json.loads((path.parent / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    build = data.get("engine_build") if isinstance(data, dict) else None
    return build if isinstance(build, dict) else {}


def manifest_dicts(obj: Any) -> Iterator[dict[str, Any]]:
    """Every object in a manifest, nested ones included: an artifact's entry is the one whose ``file`` matches."""
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from manifest_dicts(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from manifest_dicts(v)


def _flatten(entry: dict[str, Any]) -> dict[str, Any]:
    """Manifest entries keep the build record under ``details``; lift it to the top level."""
    details = entry.get("details")
    return {**entry, **details} if isinstance(details, dict) else dict(entry)


def _version(text: str) -> tuple[int, ...]:
    """major.minor.patch[.build] as numbers."""
    return tuple(int(x) for x in re.findall(r"\d+", text)[:4])


def build_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The builder options recorded for an engine (``version_compatible``, ``hardware_compatibility``, ...)."""
    raw = meta.get("options")
    return raw if isinstance(raw, dict) else {}


def engine_metadata(path: str | Path) -> dict[str, Any]:
    """The exporter's record for ``path`` (empty when there is none).

    The ``manifest.json`` entry (precision, batch) and the ``<engine>.json`` sidecar (TensorRT version,
    GPU, card) are merged, the sidecar winning; the manifest's card fills in when the entry has none.
    """
    engine = Path(path)
    meta: dict[str, Any] = {}
    manifest = engine.parent / "manifest.json"
    if manifest.is_file():
        data = read_json(manifest)
        for entry in manifest_dicts(data):
            if Path(str(entry.get("file", ""))).name == engine.name:
                meta = _flatten(entry)
                if "card" not in meta and isinstance(data, dict) and "card" in data:
                    meta["card"] = data["card"]
                break
    sidecar = engine.with_name(engine.name + ".json")
    if sidecar.is_file():
        side = read_json(sidecar)
        if isinstance(side, dict):
            meta.update(_flatten(side))
    return meta


def engine_batch_range(meta: dict[str, Any]) -> tuple[int | None, int | None]:
    """(min, max) batch of the engine's profile as recorded at build time."""
    opts = build_options(meta)
    static = meta.get("static_batch") or opts.get("static_batch")
    if static:
        return int(static), int(static)
    batch = meta.get("batch") or opts.get("batch")
    if isinstance(batch, (list, tuple)) and len(batch) == 3:
        return int(batch[0]), int(batch[2])
    lo, hi = meta.get("min_batch"), meta.get("max_batch")
    return (int(lo) if lo else None), (int(hi) if hi else None)


def card_from_engine_metadata(path: Path, meta: dict[str, Any]) -> ModelCard:
    """The card of an engine: from its record, or ``model.json`` beside it; a clear error otherwise."""
    card = meta.get("card")
    if isinstance(card, str):
        card = json.loads(card)
    if isinstance(card, dict):
        if METADATA_KEY in card:
            return ModelCard.from_metadata(card, source=str(path))
        return ModelCard.from_dict({"schema": CARD_SCHEMA, **card}, source=str(path))
    beside = path.parent / "model.json"
    if beside.is_file():
        return ModelCard.load(beside)
    raise EdgetlError(f"{path}: no edgetl metadata ({path.name}.json or a manifest.json entry); "
                      "keep the files `edgetl export` wrote beside the engine, or re-export it")


def compatibility_error(path: Path, meta: dict[str, Any], trt_version: str, gpu: str, capability: str,
                        integrated: bool = False) -> str | None:
    """Why the engine cannot run here (None when it can): TensorRT version or GPU architecture differ.

    TensorRT's standard runtime needs the same major.minor.patch.build (build compared when both record it).
    An engine built with ``--version-compatible`` runs on the TensorRT it was built with or a later one;
    ``--hardware-compatibility ampere+`` runs on any discrete GPU of sm 8.0 or newer (JetPack supports no
    hardware compatibility, so a Jetson needs its own compute capability). Others need an exact match.
    """
    opts = build_options(meta)
    built_trt = str(meta.get("tensorrt") or "")
    if built_trt:
        built, here = _version(built_trt), _version(trt_version)
        same = min(len(built), len(here))  # a record or a version without the build number compares the rest
        if opts.get("version_compatible") and here[:same] < built[:same]:
            return (f"{path}: version-compatible engine built with TensorRT {built_trt} runs on that version or "
                    f"later, this machine has {trt_version}; " + rebuild_hint(path))
        if not opts.get("version_compatible") and built[:same] != here[:same]:
            return (f"{path}: engine built with TensorRT {built_trt}, this machine has {trt_version}; "
                    + rebuild_hint(path))
    built_cc = str(meta.get("compute_capability") or "")
    if not built_cc or built_cc == capability:
        return None
    portable = not integrated and not meta.get("integrated")
    if opts.get("hardware_compatibility") == "ampere+" and portable and _version(capability) >= (8, 0):
        return None
    return (f"{path}: engine built for {meta.get('gpu', 'another GPU')} (sm {built_cc}), this GPU is {gpu} "
            f"(sm {capability}){_jetson_note(integrated, bool(meta.get('integrated')))}; " + rebuild_hint(path))


def _jetson_note(here: bool, built: bool) -> str:
    if here:
        return ", and a Jetson runs only engines built for its own GPU"
    return ", and it was built on a Jetson, whose engines are never hardware-compatible" if built else ""
