"""ONNX → TensorRT engine, strongly typed: the precision comes from the ONNX graph, not builder flags.

TensorRT 11 removed weak typing (no FP16/INT8 builder flags, no calibrators); TensorRT 10.x (JetPack 6:
10.3, JetPack 7: 10.13+) also builds strongly typed networks, so FP32, FP16 and Q/DQ INT8 ONNX files build
the same way on both. Only on 10.x, and only when asked (``legacy_fp16``), an FP32 ONNX may instead be built
weakly typed with the FP16 builder flag.

TensorRT is imported inside functions (the logger subclass is defined in a factory), so importing this
module never touches it. The module is type-checked by mypy against ``tensorrt-stubs``; it is not
executed on machines without TensorRT and a GPU.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.errors import EdgetlError
from edgetl.io import atomic_write_bytes
from edgetl.runtime.cuda import Gpu, tensorrt_module

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)
HARDWARE_LEVELS = ("none", "ampere+", "same-cc")


@dataclass
class BuildSettings:
    """The builder knobs a user chooses (``edgetl export`` flags): workspace, timing cache, portability, DLA."""

    workspace_mb: int | None = None
    timing_cache: str | None = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    dla_core: int | None = None
    legacy_fp16: bool = False  # TensorRT 10.x only: FP32 ONNX + BuilderFlag.FP16
    profiles: int = 1  # identical batch profiles: one per execution context running at once (TrtRunner contexts)

    def cli_flags(self) -> list[str]:
        """The ``edgetl export`` flags that give these settings, for the printed rebuild-on-target line."""
        flags = ["--workspace", str(self.workspace_mb)] if self.workspace_mb else []
        flags += ["--timing-cache", str(self.timing_cache)] if self.timing_cache else []  # made when missing
        flags += ["--version-compatible"] if self.version_compatible else []
        if self.hardware_compatibility != "none":
            flags += ["--hardware-compatibility", self.hardware_compatibility]
        flags += ["--dla-core", str(self.dla_core)] if self.dla_core is not None else []
        flags += ["--trt-fp16-flag"] if self.legacy_fp16 else []
        return flags + (["--profiles", str(self.profiles)] if self.profiles > 1 else [])


@dataclass
class EngineOptions(BuildSettings):
    """One engine's build: the user's settings plus the model's input and the batch profile (min, opt, max)."""

    input_name: str = "input"
    input_chw: tuple[int, int, int] = (3, 224, 224)
    batch: tuple[int, int, int] = (1, 8, 32)
    static_batch: int | None = None

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        lo, opt, hi = (self.static_batch,) * 3 if self.static_batch else self.batch
        return (lo, *self.input_chw), (opt, *self.input_chw), (hi, *self.input_chw)


@dataclass
class EngineRecord:
    """Provenance of a built engine: the runtime refuses a mismatched TensorRT version or GPU."""

    file: str
    tensorrt: str
    gpu: str
    compute_capability: str
    strongly_typed: bool
    integrated: bool = False  # a Jetson's GPU: its engines run only on its own compute capability
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, options: EngineOptions) -> str:
    """The equivalent ``trtexec`` line, for building on a target where only TensorRT's CLI exists.

    It builds one batch profile: engines for several concurrent contexts (``profiles``) need ``edgetl export``.
    """
    args = ["trtexec", f"--onnx={Path(onnx_path).name}", f"--saveEngine={Path(engine_path).name}", "--stronglyTyped"]
    if not options.static_batch:
        lo, opt, hi = (("x".join(str(d) for d in s)) for s in options.shapes())
        name = options.input_name
        args += [f"--minShapes={name}:{lo}", f"--optShapes={name}:{opt}", f"--maxShapes={name}:{hi}"]
    if options.workspace_mb:
        args.append(f"--memPoolSize=workspace:{options.workspace_mb}M")
    if options.timing_cache:
        args.append(f"--timingCacheFile={Path(options.timing_cache).name}")  # run in the export folder
    if options.version_compatible:
        args.append("--versionCompatible")
    if options.hardware_compatibility != "none":
        level = {"ampere+": "ampere+", "same-cc": "sameComputeCapability"}[options.hardware_compatibility]
        args.append(f"--hardwareCompatibilityLevel={level}")
    if options.dla_core is not None:
        args += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    return shlex.join(args)


def _make_logger() -> trt.ILogger:
    """A TensorRT logger that keeps errors for the exception message (defined here: lazy import)."""
    import tensorrt as trt

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)

    return CollectingLogger()


def _major(version: str) -> int:
    return int(version.split(".")[0])


def _network(builder: trt.Builder, strongly_typed: bool) -> trt.INetworkDefinition:
    import tensorrt as trt

    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if _major(trt.__version__) < 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # deprecated no-op on 10.x
    return builder.create_network(flags)


def _parse(network: trt.INetworkDefinition, logger: trt.ILogger, onnx_path: Path) -> None:
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgetlError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse it "
                          f"({'; '.join(errors)[:300] or 'no detail'}); try another --opset")


def _config(builder: trt.Builder, options: EngineOptions, legacy_fp16: bool) -> trt.IBuilderConfig:
    import tensorrt as trt

    config = builder.create_builder_config()
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    lo, opt, hi = options.shapes()
    for _ in range(options.profiles):
        profile = builder.create_optimization_profile()
        profile.set_shape(options.input_name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
        config.add_optimization_profile(profile)
    if legacy_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.hardware_compatibility != "none":
        config.hardware_compatibility_level = _hardware_level(options.hardware_compatibility)
    if options.dla_core is not None:
        if builder.num_DLA_cores <= options.dla_core:
            raise EdgetlError(f"--dla-core {options.dla_core}: this device has {builder.num_DLA_cores} DLA core(s); "
                              "DLA exists on Jetson AGX/NX modules only — drop --dla-core")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return config


def _hardware_level(name: str) -> trt.HardwareCompatibilityLevel:
    """The builder's level for ``--hardware-compatibility`` (same-cc exists from TensorRT 10.9 on)."""
    import tensorrt as trt

    member = {"ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}[name]
    level = getattr(trt.HardwareCompatibilityLevel, member, None)
    if level is None:
        raise EdgetlError(f"--hardware-compatibility {name} needs TensorRT 10.9 or later (this is {trt.__version__}); "
                          "use ampere+ or drop the flag")
    return level  # type: ignore[no-any-return]


def _load_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> trt.ITimingCache:
    """The timing cache at ``path`` when TensorRT accepts it; one from another version or GPU starts afresh."""
    blob = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, False):
        log.warning("%s: TensorRT refused this timing cache (another TensorRT version or GPU); starting a new one",
                    path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _save_timing_cache(cache: trt.ITimingCache, path: Path | None) -> None:
    if path is None:
        return
    atomic_write_bytes(path, bytes(memoryview(cache.serialize())))


def gpu_identity() -> Gpu:
    """The GPU an engine is built on: read with cuda-python when installed, else torch; checked before the build."""
    from edgetl.runtime.cuda import gpu_identity as cuda_gpu
    from edgetl.runtime.cuda import set_device

    try:
        set_device(0)
        return cuda_gpu(0)
    except EdgetlError:  # no cuda-python (or its driver check failed): torch knows the device too
        pass
    import torch

    if not torch.cuda.is_available():
        raise EdgetlError("building a TensorRT engine needs a CUDA GPU visible to cuda-python or PyTorch; "
                          "install edgetl[gpu] (cuda-python) on the target and build there")
    props = torch.cuda.get_device_properties(0)
    return Gpu(str(props.name), f"{props.major}.{props.minor}", bool(props.is_integrated))


def engine_from_onnx(onnx_path: str | Path, engine_path: str | Path, options: EngineOptions) -> EngineRecord:
    """Build and write a serialized engine; the record says which TensorRT and GPU it is bound to."""
    if tensorrt_module() is None:
        raise EdgetlError("TensorRT is not installed here; build on the target with `edgetl export --engine` "
                          "or the trtexec line in manifest.json")
    import tensorrt as trt

    version = str(trt.__version__)
    legacy_fp16 = options.legacy_fp16 and hasattr(trt.BuilderFlag, "FP16")
    if options.legacy_fp16 and (_major(version) >= 11 or not legacy_fp16):
        raise EdgetlError(f"--trt-fp16-flag needs TensorRT 10.x (this is {version}, which only builds strongly "
                          "typed networks); drop it — model.fp16.onnx carries the FP16 precision")
    gpu = gpu_identity()  # before minutes of building: an engine with no record of its GPU cannot be checked
    if gpu.integrated and options.hardware_compatibility != "none":
        raise EdgetlError(f"--hardware-compatibility {options.hardware_compatibility}: JetPack supports no "
                          f"hardware-compatible engines ({gpu.name} is integrated); drop the flag")
    logger = _make_logger()
    builder = trt.Builder(logger)
    network = _network(builder, strongly_typed=not legacy_fp16)
    _parse(network, logger, Path(onnx_path))
    config = _config(builder, options, legacy_fp16)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    cache = _load_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors: list[str] = getattr(logger, "errors", [])
        raise EdgetlError(f"{onnx_path}: TensorRT {version} failed to build an engine "
                          f"({'; '.join(errors)[:300] or 'see TensorRT log'})")
    atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
    _save_timing_cache(cache, cache_path)
    return EngineRecord(Path(engine_path).name, version, gpu.name, gpu.capability, strongly_typed=not legacy_fp16,
                        integrated=gpu.integrated,
                        options={k: v for k, v in asdict(options).items() if k != "input_chw"})
