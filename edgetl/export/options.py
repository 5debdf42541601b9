"""What ``edgetl export`` can be asked (``ExportOptions``), the recipe's defaults, and the same choices as flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.errors import EdgetlError
from edgetl.export.tensorrt import BuildSettings

DEFAULT_CALIB_SIZE = 512
CALIB_METHODS = ("minmax", "entropy", "percentile")  # how INT8 calibration picks each tensor's range
TARGETS = ("tensorrt", "cpu")  # the INT8 numerics a Q/DQ model is made for (see edgetl.export.int8)


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
            raise EdgetlError("--fp16 needs images to find the ops that overflow in float16; pass --calib-data DIR "
                              "or --val-data DIR")
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
            csv = name == "val_data" and folder is not None and Path(folder).suffix.lower() == ".csv"
            if folder is not None and not (Path(folder).is_dir() or csv and Path(folder).is_file()):
                what = "a folder of images or a path,label CSV" if name == "val_data" else "a folder of images"
                kind = "a file" if csv else "a directory"
                raise EdgetlError(f"{folder}: --{name.replace('_', '-')} is not {kind}; pass {what}")
        if self.opset is not None:
            import onnx

            if not 13 <= self.opset <= onnx.defs.onnx_opset_version():
                raise EdgetlError(f"--opset {self.opset}: choose 13 to {onnx.defs.onnx_opset_version()} "
                                  "(this onnx's newest; default 18)")
        if self.providers:
            import onnxruntime as ort

            from edgetl.runtime.onnxruntime import resolve_providers

            resolve_providers(self.providers, ort.get_available_providers())


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


def int8_flags(options: ExportOptions) -> list[str]:
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


def rebuild_flags(onnx_paths: dict[str, Path], out: Path, options: ExportOptions) -> list[str]:
    """`edgetl export` flags that make the same ONNX files and engines again on the target."""
    return [*(["--weights", options.weights] if options.weights else []), "--out", str(out), "--engine",
            *(["--fp16"] if "fp16" in onnx_paths else []),
            *(int8_flags(options) if "int8" in onnx_paths else []),
            *(["--val-data", str(options.val_data)] if options.val_data else []),
            *(["--opset", str(options.opset)] if options.opset else []),
            *(["--static-batch", str(options.static_batch)] if options.static_batch else
              ["--batch", ":".join(map(str, options.batch))]), *options.trt.cli_flags()]
