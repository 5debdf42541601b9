"""``export_artifacts``: checkpoint → FP32 / FP16 / INT8 ONNX (→ engines), each checked against PyTorch.

This module runs the stages in order; what may be asked is ``edgetl.export.options``, how each artifact is
judged ``edgetl.export.verify`` (reference logits from the PyTorch model; every artifact run by the runtime's
own runner, in the numerics of its target, on the same images and held to its precision's gate).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.card import ModelCard, library_versions
from edgetl.errors import EdgetlError
from edgetl.export.calib import ImageSet
from edgetl.export.manifest import MANIFEST_FILE, Artifact, Manifest, onnx_artifact
from edgetl.export.options import (  # noqa: F401  (DEFAULT_CALIB_SIZE: imported from here by callers)
    DEFAULT_CALIB_SIZE,
    ExportOptions,
    int8_flags,
    rebuild_flags,
    with_recipe,
)
from edgetl.export.verify import (
    ParitySet,
    export_images,
    infer_all,
    ort_parity,
    parity_record,
    progress_bar,
)
from edgetl.io import dir_lock, ensure_writable_dir, read_json, sha256_file
from edgetl.models.factory import mergeable
from edgetl.parity import GATES, one_class_reference
from edgetl.runtime.onnx_graph import onnx_opset

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from edgetl.export.int8 import Int8Config

log = logging.getLogger(__name__)
FP16_SEARCH_IMAGES = 128
SENSITIVITY_IMAGES = 16  # calibration images used to rank layers by the error they add (fake-quant, every tensor)
REFERENCE_RUN = "pytorch"  # out/pytorch/: the exported weights as a run directory (timm name + --weights)


@contextlib.contextmanager
def _stage(options: ExportOptions, name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    options.timings[name] = round(options.timings.get(name, 0.0) + time.perf_counter() - start, 3)  # loops add up


def _fail(manifest: Manifest, message: str) -> None:
    manifest.passed = False
    manifest.failures.append(message)


def _record(manifest: Manifest, artifact: Artifact, parity: dict[str, Any] | None = None) -> None:
    if parity is not None:
        artifact.parity = parity
    manifest.artifacts.append(artifact)
    if artifact.parity is not None and not artifact.parity["passed"]:
        _fail(manifest, f"{artifact.file}: " + "; ".join(artifact.parity["failures"]))


def _export_fp32(model: nn.Module, card: ModelCard, out: Path, parity: ParitySet, options: ExportOptions,
                 manifest: Manifest) -> Path:
    from edgetl.export.onnx import onnx_from_model

    path = out / "model.onnx"
    info: list[Any] = []
    with _stage(options, "onnx_fp32"):
        if options.fp32_onnx is not None:
            details = reuse_fp32(Path(options.fp32_onnx), card, path, options)
        else:
            onnx_from_model(model, card, path, opset=options.opset, static_batch=options.static_batch, info=info)
            details = asdict(info[0]) if info else {}
    if info and info[0].fallback_reason:
        log.warning("dynamo exporter failed (%s); used the TorchScript exporter", info[0].fallback_reason)
    with _stage(options, "parity_fp32"):  # judges a reused file's weights too: another checkpoint's fails here
        record = ort_parity(path, parity, "fp32", options)
    _record(manifest, onnx_artifact(path, "fp32", {"export": details}), record)
    return path


def reuse_fp32(source: Path, card: ModelCard, dest: Path, options: ExportOptions) -> dict[str, Any]:
    """Copy an earlier FP32 export of the same model to ``dest`` instead of exporting again, the slow step.

    Its model card, batch shape and opset must be what this export would write; FP32 parity against the
    PyTorch model then checks the weights.
    """
    import onnx

    from edgetl.card import PRECISION_KEY
    from edgetl.io import atomic_path

    try:
        model = onnx.load(str(source), load_external_data=False)
    except Exception as exc:
        raise EdgetlError(f"{source}: --fp32-onnx is not a readable ONNX file ({type(exc).__name__}); "
                          "pass an earlier export's model.onnx") from None
    meta = {p.key: p.value for p in model.metadata_props}
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    opset = onnx_opset(model)
    problems = [what for what, bad in (
        ("is not an edgetl FP32 export", meta.get(PRECISION_KEY) != "fp32"),
        ("was exported from another model card", {k: meta.get(k) for k in card.to_metadata()} != card.to_metadata()),
        ("has a batch shape other than this export's", (dim.dim_value or None) != options.static_batch),
        ("has an opset other than --opset's", options.opset is not None and opset != options.opset)) if bad]
    if problems:
        raise EdgetlError(f"{source}: --fp32-onnx {problems[0]}; export without --fp32-onnx")
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    return {"reused": str(source), "opset": opset}


def _export_fp16(fp32: Path, out: Path, calib: ImageSet, parity: ParitySet, options: ExportOptions,
                 manifest: Manifest) -> Path | None:
    from edgetl.export.fp16 import MAX_ROUNDS, NonFiniteOutputs, fp16_from_onnx

    path = out / "model.fp16.onnx"
    with _stage(options, "onnx_fp16"), progress_bar("FP16: nodes kept in float32", MAX_ROUNDS, options.quiet) as kept:
        try:
            report = fp16_from_onnx(fp32, path, calib.array[:FP16_SEARCH_IMAGES],
                                    min_agreement=GATES["fp16"].min_agreement or 0.995, progress=kept)
        except NonFiniteOutputs as exc:
            _fail(manifest, str(exc))
            return None
        except ort_graph_errors() as exc:  # a converter defect must not cost the INT8 file and the manifest
            _fail(manifest, f"{path}: ONNX Runtime rejects the FP16 graph ({str(exc).splitlines()[0][:200]}); not "
                            "written — ship FP32, and report the model: the FP16 conversion mistyped a value")
            return None
    with _stage(options, "parity_fp16"):
        record = ort_parity(path, parity, "fp16", options)
    _record(manifest, onnx_artifact(path, "fp16", {"fp16": report.to_dict()}), record)
    return path


def ort_graph_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's errors for a graph it cannot load or run (its own types, not RuntimeError)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return state.Fail, state.InvalidGraph, state.NotImplemented, state.RuntimeException


@dataclasses.dataclass
class _Int8Job:
    """What the INT8 budget search works on: the prepared FP32 model and the nodes it may keep in float."""

    prepared: Path
    cache: Path  # calibration ranges, computed once and reused by every retry
    kept: list[str]  # nodes the user's --int8-keep-float roles keep in float
    candidates: set[str]  # nodes the search may keep in float
    means: dict[str, np.ndarray] | None  # per-input means for bias correction


def _export_int8(fp32: Path, card: ModelCard, out: Path, calib: ImageSet, parity: ParitySet, options: ExportOptions,
                 manifest: Manifest) -> Path:
    from edgetl.export.int8 import Int8Config

    config = Int8Config.for_target(options.int8_target, options.calib_method or "minmax", options.reduce_range,
                                   bias_correction=options.bias_correction)
    path = out / "model.int8.onnx"
    roles = list(options.int8_keep_float or [])
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix=".int8.", dir=out) as tmp:
        job = _int8_job(fp32, Path(tmp), roles, calib, config, options)
        record, excluded = _int8_within_budget(job, path, card, calib, parity, config, options, report)
    if not record["passed"] and options.max_accuracy_drop is not None:
        record["failures"].append(f"budget {options.max_accuracy_drop} pts not met after keeping {len(excluded)} "
                                  f"layer(s) in float (limit --max-excluded {options.max_excluded})")
    details = {"int8": {**config.to_dict(), "calibration_images": len(calib), "calibration_source": calib.source,
                        "calibration_skipped": [f"{p}: {reason}" for p, reason in calib.skipped],
                        "kept_float": {"roles": roles, "nodes": job.kept}, **report,
                        "excluded_for_accuracy": excluded}}
    _record(manifest, onnx_artifact(path, "int8", details), record)
    return path


def _int8_job(fp32: Path, tmp: Path, roles: list[str], calib: ImageSet, config: Int8Config,
              options: ExportOptions) -> _Int8Job:
    """Prepare the FP32 model for quantization; keep the user's roles in float (``config`` is updated)."""
    import onnx

    from edgetl.export.bias_correction import input_means
    from edgetl.export.int8 import BIAS_CORRECTION_IMAGES, prepare_for_quantization, quantizable_nodes
    from edgetl.export.roles import nodes_for_roles

    prepared = prepare_for_quantization(fp32, tmp / "prepared.onnx")
    model = onnx.load(str(prepared))
    kept = nodes_for_roles(model, roles)
    config.nodes_to_exclude = list(kept)
    candidates = quantizable_nodes(prepared, config) - set(kept)
    with _stage(options, "onnx_int8"):
        means = input_means(model, calib.array[:BIAS_CORRECTION_IMAGES]) if config.bias_correction else None
    return _Int8Job(prepared, tmp / "calibration.json", kept, candidates, means)


def _int8_within_budget(job: _Int8Job, path: Path, card: ModelCard, calib: ImageSet, parity: ParitySet,
                        config: Int8Config, options: ExportOptions,
                        report: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Quantize and check parity; while over ``--max-accuracy-drop``, keep the most harmful node in float.

    Returns the last parity record and the nodes kept in float for accuracy, in order.
    """
    from edgetl.export.int8 import int8_from_onnx, most_sensitive_node

    excluded: list[dict[str, Any]] = []
    while True:
        with _stage(options, "onnx_int8"), progress_bar("Calibrating", len(calib), options.quiet) as advance:
            int8_from_onnx(job.prepared, path, calib.array, config, metadata=card.to_metadata(), cache=job.cache,
                           progress=advance, means=job.means, report=report)
        with _stage(options, "parity_int8"):
            record = ort_parity(path, parity, "int8", options, config.eval_optimization)
        if record["passed"] or options.max_accuracy_drop is None or len(excluded) >= options.max_excluded:
            return record, excluded
        # ranked on calibration images: the held-out parity images only judge
        with _stage(options, "int8_sensitivity"):
            worst = most_sensitive_node(job.prepared, path, calib.array[:SENSITIVITY_IMAGES],
                                        job.candidates - set(config.nodes_to_exclude), config.target)
        if worst is None:
            return record, excluded
        config.nodes_to_exclude.append(worst[0])
        excluded.append({"node": worst[0], "op": worst[1], "introduced_error": worst[2],
                         "drop_before": record.get("drop")})
        log.info("INT8 drop %.2f pts > budget: keeping %s (%s) in float", record.get("drop", 0.0), *worst[:2])


def _engines(onnx_paths: dict[str, Path], card: ModelCard, source: str, out: Path, parity: ParitySet,
             options: ExportOptions, manifest: Manifest) -> None:
    from edgetl.export.tensorrt import EngineOptions, engine_from_onnx, trtexec_command
    from edgetl.runtime.cuda import tensorrt_module

    settings = {**asdict(options.trt), "timing_cache": options.trt.timing_cache or str(out / "timing.cache"),
                "legacy_fp16": False}  # set per engine below
    eopts = EngineOptions(**settings, input_chw=tuple(card.preprocess.input_size),  # type: ignore[arg-type]
                          batch=options.batch, static_batch=options.static_batch)
    onnx_paths = dict(onnx_paths)
    skipped = {}
    if "int8" in onnx_paths and options.int8_target == "cpu":  # U8, asymmetric: TensorRT takes symmetric S8 only
        del onnx_paths["int8"]
        skipped["int8"] = ("model.int8.onnx is the CPU target's (U8 activations, for ONNX Runtime): TensorRT "
                           "builds symmetric S8 only; export --int8-target tensorrt for an INT8 engine")
    commands = {p: trtexec_command(path, path.with_name(f"model.{p}.engine"), eopts) for p, path in onnx_paths.items()}
    rebuild = shlex.join(["edgetl", "export", source, *rebuild_flags(onnx_paths, out, options)])
    manifest.engine_build = {"edgetl": rebuild,
                             "trtexec": commands, "batch": eopts.shapes(), **({"skipped": skipped} if skipped else {})}
    if not options.engine:
        manifest.engine_build["status"] = "not requested"
        return
    if tensorrt_module() is None:
        manifest.engine_build["status"] = "not built: TensorRT is not installed on this machine"
        return
    manifest.engine_build["status"] = "built"
    for precision, onnx_path in onnx_paths.items():
        engine = onnx_path.with_name(f"model.{precision}.engine")
        legacy = precision == "fp16" and options.trt.legacy_fp16
        with _stage(options, f"engine_{precision}"):
            record = engine_from_onnx(onnx_paths["fp32"] if legacy else onnx_path, engine,
                                      dataclasses.replace(eopts, legacy_fp16=legacy))
        artifact = Artifact(file=engine.name, format="tensorrt", precision=precision, sha256=sha256_file(engine),
                            bytes=engine.stat().st_size, details=record.to_dict())
        _write_engine_sidecar(engine, {**record.to_dict(), "precision": precision}, card)
        artifact.parity = _engine_parity(engine, precision, parity, options)
        _record(manifest, artifact)


def _write_engine_sidecar(engine: Path, record: dict[str, Any], card: ModelCard) -> None:
    """``<engine>.json``: all an engine needs to be run and checked alone (cpp_bench reads it too)."""
    from edgetl.io import atomic_write_json

    atomic_write_json(engine.with_name(engine.name + ".json"), {**record, "card": card.to_dict()})


def _engine_parity(engine: Path, precision: str, parity: ParitySet, options: ExportOptions) -> dict[str, Any]:
    from edgetl.runtime.loader import runner_from_artifact

    with runner_from_artifact(engine) as runner:
        return parity_record(runner, parity, precision, options, f"Parity {engine.name}")


def _export_aoti(model: nn.Module, card: ModelCard, out: Path, parity: ParitySet, options: ExportOptions,
                 manifest: Manifest) -> None:
    from edgetl.export.aoti import pt2_from_model

    path = out / "model.pt2"
    with _stage(options, "aoti"):
        pt2_from_model(model, card, path, max_batch=options.batch[2])
    artifact = Artifact(file=path.name, format="aoti", precision="fp32", sha256=sha256_file(path),
                        bytes=path.stat().st_size, details={"export": {"reparameterized": mergeable(model)}})
    from edgetl.runtime.loader import runner_from_artifact

    with runner_from_artifact(path) as runner:
        artifact.parity = parity_record(runner, parity, "fp32", options, f"Parity {path.name}")
    _record(manifest, artifact)


def export_artifacts(checkpoint: str | Path, out_dir: str | Path, options: ExportOptions | None = None) -> Manifest:
    """Export ``checkpoint`` (run dir, .safetensors, or timm name + ``options.weights``) into ``out_dir``.

    Returns the manifest (also written to ``out_dir/manifest.json``); ``manifest.passed`` is False when a
    parity gate or the accuracy budget failed. User errors raise :class:`EdgetlError`. The export that
    was in ``out_dir`` is replaced; one process at a time may export into a directory.
    """
    options = options or ExportOptions()
    options.validate()
    _refuse_run_dir(Path(out_dir))
    created = not Path(out_dir).exists()
    out = ensure_writable_dir(out_dir)
    with contextlib.ExitStack() as stack:
        stack.callback(_drop_if_unused, out, created)  # after the lock below is released
        stack.enter_context(dir_lock(out, "exporting"))
        manifest = _export_into(checkpoint, out, options)
    return manifest


def _refuse_run_dir(out: Path) -> None:
    """A training run's folder is not an export's: files written there would sit beside the weights they no
    longer describe once ``edgetl train --resume`` trains on."""
    from edgetl.checkpoint import BEST_WEIGHTS, CARD_FILE, LAST_WEIGHTS

    if (out / CARD_FILE).is_file() and ((out / BEST_WEIGHTS).is_file() or (out / LAST_WEIGHTS).is_file()):
        raise EdgetlError(f"--out {out}: a training run's directory; export into another folder, e.g. "
                          f"{out / 'export'} (the default for this run)")


def _drop_if_unused(out: Path, created: bool) -> None:
    """Remove an output directory this export created and wrote nothing into (it failed on bad input)."""
    if created and out.is_dir() and {p.name for p in out.iterdir()} <= {".lock"}:
        (out / ".lock").unlink(missing_ok=True)
        out.rmdir()


def clear_previous_export(out: Path) -> None:
    """Take the last export in ``out`` away before writing a new one, the manifest first.

    An interrupted re-export then leaves no ``manifest.json`` vouching (parity, hashes) for files it no
    longer describes, and no stale staging left by a killed export lingers.
    """
    old = out / MANIFEST_FILE
    files: list[str] = []
    if old.is_file():
        with contextlib.suppress(EdgetlError):
            files = [str(e.get("file", "")) for e in read_json(old).get("artifacts", []) if isinstance(e, dict)]
        old.unlink()
    for name in files:
        if name and Path(name).name == name:  # only files the manifest named inside ``out``
            for stale in (out / name, out / f"{name}.json"):
                stale.unlink(missing_ok=True)
    # and what an export writes, even with no manifest to name it (an interrupted one): no unchecked file stays
    for pattern in (".export.*", ".int8.*", ".*.tmp", "model.onnx", "model.*.onnx", "model.*.engine",
                    "model.*.engine.json", "model.pt2"):
        for stale in out.glob(pattern):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def _export_into(checkpoint: str | Path, out: Path, options: ExportOptions) -> Manifest:
    from edgetl.checkpoint import save_checkpoint
    from edgetl.data.trained_on import trained_on
    from edgetl.export.source import load_source
    from edgetl.runtime.torch_runner import TorchRunner

    if options.fp32_onnx is not None and Path(options.fp32_onnx).resolve().parent == out.resolve():
        raise EdgetlError(f"{options.fp32_onnx}: --fp32-onnx is in --out {out}, whose export this one "
                          "replaces; copy it elsewhere first")
    with _stage(options, "load"):
        model, card, source = load_source(checkpoint, options.weights)
        if source["kind"] == "timm":  # a run directory to bench and run parity against, as after training
            save_checkpoint(out / REFERENCE_RUN, "best", model, card)
            source["reference_run"] = REFERENCE_RUN
    options = with_recipe(options, card.arch)
    trained = trained_on(checkpoint) if source["kind"] == "checkpoint" else None
    calib, parity_images, parity_info = export_images(card, options, trained)
    with _stage(options, "reference"):
        reference = infer_all(TorchRunner(model, card), parity_images.array, "PyTorch reference", options.quiet)
    if parity_images.paths and (warning := one_class_reference(reference, card.classes)):
        log.warning("parity: %s", warning)  # not on synthetic inputs (no paths): those may well all land on one class
    parity = ParitySet(parity_images, reference, parity_info)
    clear_previous_export(out)
    batch = {"static": options.static_batch} if options.static_batch else dict(zip(("min", "opt", "max"), options.batch,
                                                                                  strict=True))
    manifest = Manifest(card=card.to_dict(), source=source, batch=batch, parity_data=parity_info,
                        versions=library_versions("onnxslim", "onnxscript", "tensorrt"))
    onnx_paths = {"fp32": _export_fp32(model, card, out, parity, options, manifest)}
    if options.fp16:
        fp16 = _export_fp16(onnx_paths["fp32"], out, calib or parity_images, parity, options, manifest)
        if fp16 is not None:
            onnx_paths["fp16"] = fp16
    if options.int8 and calib is not None:
        onnx_paths["int8"] = _export_int8(onnx_paths["fp32"], card, out, calib, parity, options, manifest)
    _engines(onnx_paths, card, str(checkpoint), out, parity, options, manifest)
    if options.aoti:
        _export_aoti(model, card, out, parity, options, manifest)
    manifest.engine_build.setdefault("status", "not requested")
    manifest.save(out)
    return manifest
