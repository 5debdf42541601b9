"""``export_artifacts``: checkpoint → FP32 / FP16 / INT8 ONNX (→ engines), each checked against PyTorch.

Reference logits come from the PyTorch model (TorchRunner); every artifact is run by the runtime's own
runner (OrtRunner, in the numerics of its target) on the same images and held to its precision's gate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.card import ModelCard, library_versions
from edgetl.errors import EdgetlError
from edgetl.export.calib import (
    ImageSet,
    calibration_files,
    labelled_images,
    preprocess_files,
    split_calibration,
)
from edgetl.export.manifest import MANIFEST_FILE, Artifact, Manifest, onnx_artifact
from edgetl.export.tensorrt import BuildSettings
from edgetl.io import dir_lock, ensure_writable_dir, read_json, sha256_file
from edgetl.parity import GATES, Gate, ParityStats, check_gate, compare_logits, gate_for
from edgetl.progress import show_progress
from edgetl.runtime.onnx_graph import onnx_opset

if TYPE_CHECKING:
    from torch import nn

    from edgetl.runtime.base import Runner

log = logging.getLogger(__name__)
FP16_SEARCH_IMAGES = 128
DEFAULT_CALIB_SIZE = 512
SYNTHETIC_IMAGES = 8
INFER_CHUNK = 16
SENSITIVITY_IMAGES = 16  # calibration images used to rank layers by the error they add (fake-quant, every tensor)
REFERENCE_RUN = "pytorch"  # out/pytorch/: the exported weights as a run directory (timm name + --weights)


@dataclass
class ExportOptions:
    """Everything ``edgetl export`` can be asked; None means the default."""

    weights: str | None = None
    fp16: bool = False
    int8: bool = False
    calib_data: Path | None = None
    calib_size: int | None = None  # None: the recipe's (models/<arch>.yaml, export:), else 512
    calib_method: str | None = None  # None: the recipe's, else minmax
    int8_target: str = "tensorrt"
    reduce_range: bool | None = None  # None: the target's default (cpu: True — see edgetl.export.int8)
    int8_keep_float: list[str] | None = None  # layer roles (stem, classifier) kept float; None: models/<arch>.yaml
    bias_correction: bool = True  # take the weight-rounding shift out of the biases (edgetl.export.int8)
    val_data: Path | None = None
    parity_data: Path | None = None  # unlabelled images for parity (else held-out calibration images)
    parity_size: int = 256
    max_accuracy_drop: float | None = None
    max_excluded: int = 8
    engine: bool = False
    batch: tuple[int, int, int] = (1, 8, 32)
    static_batch: int | None = None
    opset: int | None = None
    trt: BuildSettings = field(default_factory=BuildSettings)  # legacy_fp16: FP16 engine from the FP32 ONNX
    aoti: bool = False
    fp32_onnx: Path | None = None  # an earlier export's model.onnx of this same model, reused instead of exporting
    seed: int = 0
    providers: list[str] | None = None
    quiet: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # filled in: seconds per stage

    def validate(self) -> None:
        from edgetl.export.int8 import Int8Config

        if self.int8 and self.calib_data is None:
            raise EdgetlError("--int8 needs --calib-data DIR (a few hundred photos like the deployment's)")
        if self.fp16 and self.calib_data is None and self.val_data is None:
            raise EdgetlError("--fp16 needs images to find the ops that overflow in float16; pass --calib-data DIR")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise EdgetlError(f"--batch {lo}:{opt}:{hi} must satisfy 1 <= MIN <= OPT <= MAX (e.g. 1:8:32)")
        if self.static_batch is not None and self.static_batch < 1:
            raise EdgetlError(f"--static-batch {self.static_batch} must be at least 1")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise EdgetlError(f"--max-accuracy-drop {self.max_accuracy_drop} must be >= 0 (points of top-1)")
        if self.int8:
            Int8Config.for_target(self.int8_target, self.calib_method or "minmax", self.reduce_range)
        if self.trt.profiles < 1:
            raise EdgetlError(f"--profiles {self.trt.profiles} must be at least 1 (one per concurrent context)")
        if self.calib_size is not None and self.calib_size < 1:
            raise EdgetlError(f"--calib-size {self.calib_size} must be at least 1")
        if self.int8_keep_float is not None:
            from edgetl.export.roles import ROLES

            unknown = [r for r in self.int8_keep_float if r not in ROLES]
            if unknown:
                raise EdgetlError(f"unknown layer role {unknown[0]!r} to keep in float; choose from {', '.join(ROLES)}")
        self._check_inputs()

    def _check_inputs(self) -> None:
        """Files, folders, opset and providers: refused before the slow FP32 export, not after it."""
        if self.fp32_onnx is not None and not Path(self.fp32_onnx).is_file():
            raise EdgetlError(f"{self.fp32_onnx}: --fp32-onnx is not a file; pass an earlier export's model.onnx")
        for name in ("calib_data", "val_data", "parity_data"):
            folder = getattr(self, name)
            if folder is not None and not Path(folder).is_dir():
                raise EdgetlError(f"{folder}: --{name.replace('_', '-')} is not a directory; pass a folder of images")
        if self.opset is not None:
            import onnx

            if not 13 <= self.opset <= onnx.defs.onnx_opset_version():
                raise EdgetlError(f"--opset {self.opset}: choose 13 to {onnx.defs.onnx_opset_version()} "
                                  "(this onnx's newest; default 18)")
        if self.providers:
            import onnxruntime as ort

            from edgetl.runtime.onnxruntime import resolve_providers

            resolve_providers(self.providers, ort.get_available_providers())


@contextlib.contextmanager
def _progress(describe: str, total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, disable=not show_progress(not quiet)) as bar:
        task = bar.add_task(describe, total=total)
        yield lambda n: bar.advance(task, n)


def infer_all(runner: Runner, images: np.ndarray, describe: str, quiet: bool = False) -> np.ndarray:
    """Logits for ``images`` in chunks, with a progress bar."""
    outs = []
    with _progress(describe, len(images), quiet) as advance:
        for i in range(0, len(images), INFER_CHUNK):
            outs.append(runner.infer(images[i:i + INFER_CHUNK]))
            advance(len(outs[-1]))
    return np.concatenate(outs) if outs else np.zeros((0, runner.card.num_classes), np.float32)


def _providers(requested: list[str] | None) -> list[str] | None:
    """CUDA where present, else CPU (never the TensorRT EP: it would time engine builds, not parity)."""
    if requested is not None:
        return requested
    import onnxruntime as ort

    return ["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else ["cpu"]


@dataclass
class ParitySet:
    images: ImageSet
    reference: np.ndarray
    info: dict[str, Any]


def _images(card: ModelCard, options: ExportOptions) -> tuple[ImageSet | None, ImageSet, dict[str, Any]]:
    """(calibration images, parity images, description of the parity data); files left out are listed."""
    from edgetl.data.folder import report_skipped

    calib, parity, info = _load_images(card, options)
    skipped = dict.fromkeys([*(calib.skipped if calib else []), *parity.skipped])
    if skipped and not options.quiet:
        report_skipped(list(skipped))
    if parity.skipped:
        info["skipped"] = [f"{p}: {reason}" for p, reason in parity.skipped]
    return calib, parity, info


def _load_images(card: ModelCard, options: ExportOptions) -> tuple[ImageSet | None, ImageSet, dict[str, Any]]:
    pre = card.preprocess
    calib: ImageSet | None = None
    held: list[Path] = []
    if options.calib_data is not None:
        files = calibration_files(options.calib_data)
        chosen, held = split_calibration(files, options.calib_size or DEFAULT_CALIB_SIZE, options.seed)
        calib = preprocess_files(chosen, pre, describe="Loading calibration images", source=str(options.calib_data))
    if options.val_data is not None:
        val = labelled_images(options.val_data, card.classes, pre, options.parity_size, options.seed)
        info = {"source": str(options.val_data), "n": len(val), "labelled": True,
                "same_as_calibration": bool(calib and set(val.paths) & set(calib.paths))}
        if val.class_map:
            info["class_map"] = val.class_map
        return calib, val, info
    if options.parity_data is not None:
        files = calibration_files(options.parity_data)[:options.parity_size]
        parity = preprocess_files(files, pre, describe="Loading parity images", source=str(options.parity_data))
        return calib, parity, {"source": str(options.parity_data), "n": len(parity), "labelled": False,
                               "same_as_calibration": bool(calib and set(parity.paths) & set(calib.paths))}
    if held:
        parity = preprocess_files(held[:options.parity_size], pre, describe="Loading held-out images",
                                  source=str(options.calib_data))
        return calib, parity, {"source": f"{options.calib_data} (held out of calibration)", "n": len(parity),
                               "labelled": False, "same_as_calibration": False}
    if calib is not None:
        sub = ImageSet(calib.array[:options.parity_size], calib.paths[:options.parity_size], None, calib.source)
        return calib, sub, {"source": f"{options.calib_data} (the calibration images)", "n": len(sub),
                            "labelled": False, "same_as_calibration": True}
    rng = np.random.default_rng(options.seed)
    synthetic = rng.standard_normal((SYNTHETIC_IMAGES, *card.preprocess.input_size)).astype(np.float32)
    return None, ImageSet(synthetic, [Path(f"synthetic_{i}") for i in range(SYNTHETIC_IMAGES)], None, "synthetic"), {
        "source": "synthetic N(0,1) inputs (pass --val-data or --calib-data for real images)",
        "n": SYNTHETIC_IMAGES, "labelled": False, "same_as_calibration": False}


def int8_drop(stats: ParityStats) -> tuple[float, str]:
    """Top-1 drop in points: accuracy against labels, else disagreement with FP32 (an upper bound)."""
    if stats.accuracy_drop is not None:
        return stats.accuracy_drop, "top-1 accuracy drop vs FP32 (labels)"
    return (1.0 - stats.top1_agreement) * 100.0, "top-1 disagreement with FP32 (no labels)"


def int8_fix_hint(budget: float) -> str:
    """What to do about a failed INT8 gate (the budget search is opt-in: it costs a quantization per layer tried)."""
    return (f"--max-accuracy-drop {budget:g} keeps the layers that add the most error in float until the drop "
            "holds; more labelled --val-data images judge the drop more surely")


def _gate(precision: str, options: ExportOptions) -> Gate:
    """``edgetl parity``'s default gate, with ``--max-accuracy-drop`` as INT8's budget."""
    budget = options.max_accuracy_drop
    return gate_for(precision, {"int8.max_accuracy_drop": budget} if budget is not None else None)


def parity_record(runner: Runner, parity: ParitySet, precision: str, options: ExportOptions,
                  describe: str) -> dict[str, Any]:
    """Run ``runner`` on the parity images and judge it against the PyTorch reference."""
    logits = infer_all(runner, parity.images.array, describe, options.quiet)
    stats = compare_logits(parity.reference, logits, parity.images.labels)
    gate = _gate(precision, options)
    failures = check_gate(stats, gate)
    evaluated_with = {"backend": runner.info.backend, "device": runner.info.device,
                      **{k: runner.info.details.get(k) for k in ("provider", "optimization")}}
    record: dict[str, Any] = {**stats.to_dict(), "gate": asdict(gate), "evaluated_with": evaluated_with}
    if not np.all(np.isfinite(logits)):
        failures.append("outputs contain inf/NaN")
    if precision == "int8" and gate.max_accuracy_drop is not None:
        drop, basis = int8_drop(stats)
        record["drop"], record["drop_basis"] = drop, basis
        if drop > gate.max_accuracy_drop and options.max_accuracy_drop is None:
            failures.append(int8_fix_hint(gate.max_accuracy_drop))
    record["worst_files"] = [str(parity.images.paths[i]) for i in stats.worst]  # same order as "worst"
    record["passed"], record["failures"] = not failures, failures
    return record


def _ort_parity(path: Path, parity: ParitySet, precision: str, options: ExportOptions,
                optimization: str = "all") -> dict[str, Any]:
    from edgetl.runtime.onnxruntime import OrtRunner

    with OrtRunner(path, providers=_providers(options.providers), optimization=optimization) as runner:
        return parity_record(runner, parity, precision, options, f"Parity {path.name}")


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
        record = _ort_parity(path, parity, "fp32", options)
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
    from edgetl.export.fp16 import NonFiniteOutputs, fp16_from_onnx

    path = out / "model.fp16.onnx"
    with _stage(options, "onnx_fp16"):
        try:
            report = fp16_from_onnx(fp32, path, calib.array[:FP16_SEARCH_IMAGES],
                                    min_agreement=GATES["fp16"].min_agreement or 0.995)
        except NonFiniteOutputs as exc:
            _fail(manifest, str(exc))
            return None
    with _stage(options, "parity_fp16"):
        record = _ort_parity(path, parity, "fp16", options)
    _record(manifest, onnx_artifact(path, "fp16", {"fp16": report.to_dict()}), record)
    return path


def with_recipe(options: ExportOptions, arch: str) -> ExportOptions:
    """``options`` with what was left None taken from ``models/<arch>.yaml`` (``export:``), else the defaults."""
    from edgetl.config import export_recipe_for

    recipe = export_recipe_for(arch)
    keep = options.int8_keep_float if options.int8_keep_float is not None else recipe.get("int8_keep_float") or []
    resolved = dataclasses.replace(
        options, calib_size=options.calib_size or int(recipe.get("calib_size", DEFAULT_CALIB_SIZE)),
        calib_method=options.calib_method or str(recipe.get("calib_method", "minmax")),
        int8_keep_float=[str(r) for r in keep])
    resolved.validate()
    return resolved


def _export_int8(fp32: Path, card: ModelCard, out: Path, calib: ImageSet, parity: ParitySet, options: ExportOptions,
                 manifest: Manifest) -> Path:
    import onnx

    from edgetl.export.int8 import (
        BIAS_CORRECTION_IMAGES,
        Int8Config,
        input_means,
        int8_from_onnx,
        most_sensitive_node,
        prepare_for_quantization,
        quantizable_nodes,
    )
    from edgetl.export.roles import nodes_for_roles

    config = Int8Config.for_target(options.int8_target, options.calib_method or "minmax", options.reduce_range,
                                   bias_correction=options.bias_correction)
    path = out / "model.int8.onnx"
    excluded: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    roles = list(options.int8_keep_float or [])
    with tempfile.TemporaryDirectory(prefix=".int8.", dir=out) as tmp:
        prepared = prepare_for_quantization(fp32, Path(tmp) / "prepared.onnx")
        cache = Path(tmp) / "calibration.json"
        model = onnx.load(str(prepared))
        kept = nodes_for_roles(model, roles)
        config.nodes_to_exclude = list(kept)
        candidates = quantizable_nodes(prepared, config) - set(kept)
        with _stage(options, "onnx_int8"):
            means = input_means(model, calib.array[:BIAS_CORRECTION_IMAGES]) if config.bias_correction else None
        del model
        meta = {k: v for k, v in card.to_metadata().items()}
        while True:
            with _stage(options, "onnx_int8"), _progress("Calibrating", len(calib), options.quiet) as advance:
                int8_from_onnx(prepared, path, calib.array, config, metadata=meta, cache=cache, progress=advance,
                               means=means, report=report)
            with _stage(options, "parity_int8"):
                record = _ort_parity(path, parity, "int8", options, config.eval_optimization)
            if record["passed"] or options.max_accuracy_drop is None or len(excluded) >= options.max_excluded:
                break
            # ranked on calibration images: the held-out parity images only judge
            with _stage(options, "int8_sensitivity"):
                worst = most_sensitive_node(prepared, path, calib.array[:SENSITIVITY_IMAGES],
                                            candidates - set(config.nodes_to_exclude), config.target)
            if worst is None:
                break
            config.nodes_to_exclude.append(worst[0])
            excluded.append({"node": worst[0], "op": worst[1], "introduced_error": worst[2],
                             "drop_before": record.get("drop")})
            log.info("INT8 drop %.2f pts > budget: keeping %s (%s) in float", record.get("drop", 0.0), *worst[:2])
    if not record["passed"] and options.max_accuracy_drop is not None:
        record["failures"].append(f"budget {options.max_accuracy_drop} pts not met after keeping {len(excluded)} "
                                  f"layer(s) in float (limit --max-excluded {options.max_excluded})")
    details = {"int8": {**config.to_dict(), "calibration_images": len(calib), "calibration_source": calib.source,
                        "calibration_skipped": [f"{p}: {reason}" for p, reason in calib.skipped],
                        "kept_float": {"roles": roles, "nodes": kept}, **report,
                        "excluded_for_accuracy": excluded}}
    _record(manifest, onnx_artifact(path, "int8", details), record)
    return path


def _int8_flags(options: ExportOptions) -> list[str]:
    """The flags that make the same INT8 model again (same images, seed, method and budget) on the target."""
    flags = ["--int8", "--calib-data", str(options.calib_data), "--calib-size", str(options.calib_size),
             "--calib-method", str(options.calib_method), "--int8-target", options.int8_target]
    if options.reduce_range is not None:
        flags.append("--reduce-range" if options.reduce_range else "--no-reduce-range")
    if options.max_accuracy_drop is not None:  # the budget search also depends on the images that judge it
        flags += ["--max-accuracy-drop", str(options.max_accuracy_drop), "--max-excluded", str(options.max_excluded),
                  "--parity-size", str(options.parity_size)]
        if options.val_data is None and options.parity_data is not None:
            flags += ["--parity-data", str(options.parity_data)]
    return flags


def _rebuild_flags(onnx_paths: dict[str, Path], out: Path, options: ExportOptions) -> list[str]:
    """`edgetl export` flags that make the same ONNX files and engines again on the target."""
    return [*(["--weights", options.weights] if options.weights else []), "--out", str(out), "--engine",
            *(["--fp16"] if "fp16" in onnx_paths else []),
            *(_int8_flags(options) if "int8" in onnx_paths else []),
            *(["--val-data", str(options.val_data)] if options.val_data else []),
            *(["--opset", str(options.opset)] if options.opset else []),
            *(["--static-batch", str(options.static_batch)] if options.static_batch else
              ["--batch", ":".join(map(str, options.batch))]), *options.trt.cli_flags()]


def _engines(onnx_paths: dict[str, Path], card: ModelCard, source: str, out: Path, parity: ParitySet,
             options: ExportOptions, manifest: Manifest) -> None:
    from edgetl.export.tensorrt import EngineOptions, engine_from_onnx, trtexec_command
    from edgetl.runtime.tensorrt import tensorrt_module

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
    rebuild = shlex.join(["edgetl", "export", source, *_rebuild_flags(onnx_paths, out, options)])
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
        _write_engine_sidecar(engine, record.to_dict(), card)
        artifact.parity = _engine_parity(engine, precision, parity, options)
        _record(manifest, artifact)


def _write_engine_sidecar(engine: Path, record: dict[str, Any], card: ModelCard) -> None:
    from edgetl.io import atomic_write_json

    atomic_write_json(engine.with_name(engine.name + ".json"), {**record, "card": card.to_dict()})


def _engine_parity(engine: Path, precision: str, parity: ParitySet, options: ExportOptions) -> dict[str, Any]:
    from edgetl.runtime.loader import runner_from_artifact

    with runner_from_artifact(engine) as runner:
        return parity_record(runner, parity, precision, options, f"Parity {engine.name}")


def _export_aoti(model: nn.Module, card: ModelCard, out: Path, parity: ParitySet, options: ExportOptions,
                 manifest: Manifest) -> None:
    try:
        from edgetl.export.aoti import pt2_from_model
    except ImportError:
        raise EdgetlError("--aoti: the AOTInductor exporter (edgetl.export.aoti) "
                          "is not available in this build") from None
    path = out / "model.pt2"
    with _stage(options, "aoti"):
        pt2_from_model(model, card, path, max_batch=options.batch[2])
    artifact = Artifact(file=path.name, format="aoti", precision="fp32", sha256=sha256_file(path),
                        bytes=path.stat().st_size)
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
    created = not Path(out_dir).exists()
    out = ensure_writable_dir(out_dir)
    with contextlib.ExitStack() as stack:
        stack.callback(_drop_if_unused, out, created)  # after the lock below is released
        stack.enter_context(dir_lock(out, "exporting"))
        manifest = _export_into(checkpoint, out, options)
    return manifest


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
    calib, parity_images, parity_info = _images(card, options)
    with _stage(options, "reference"):
        reference = infer_all(TorchRunner(model, card), parity_images.array, "PyTorch reference", options.quiet)
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
