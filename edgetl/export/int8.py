"""FP32 ONNX → INT8 ONNX with explicit QuantizeLinear/DequantizeLinear, by post-training calibration.

Tooling choice (checked 2026-11-23): NVIDIA ModelOpt 0.47.0 (``nvidia-modelopt[onnx]``) pins
``onnx~=1.21.0``, ``onnxruntime-gpu~=1.24.2`` (x86-64 Linux, Python > 3.10), ``onnxconverter-common~=1.16``,
``cupy-cuda12x`` and ``polygraphy``; installing it would downgrade onnx 1.23.2 and replace onnxruntime 1.32.0
(CPU) here, so edgetl uses ONNX Runtime's quantizer (``quantize_static``, QDQ format), which writes the
same explicit Q/DQ that TensorRT's strongly typed networks build from.

Two targets, because the fast integer kernels differ:

* ``tensorrt``: int8 activations and weights, both symmetric (zero point 0), weights per output channel;
  Q/DQ only on the ops TensorRT runs in int8 (convolutions, GEMMs, residual adds, pooling) so it fuses
  them. Judged with ONNX Runtime graph optimisation off (Q/DQ as float fake-quant, as TensorRT computes).
* ``cpu``: uint8 activations, int8 per-channel weights — what ONNX Runtime's x86 kernels run fast.
  Judged with ONNX Runtime's default optimisation (fused integer kernels). ``reduce_range`` (7-bit
  weights, the CPU default) avoids the int16 saturation of x86 CPUs without VNNI: measured on ImageNet
  Lite0 over 153 photos, top-1 agreement with FP32 88.2% without it, 93.5% with it, at the same speed
  (benchmarks/results/export.json).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.export import probe
from edgetl.export.onnx import PRECISION_KEY, check_and_save, set_metadata

CALIB_METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("tensorrt", "cpu")
TARGET_KEY = "edgetl.int8_target"
# What each target's artifact is judged with (OrtRunner ``optimization``).
EVAL_OPTIMIZATION = {"tensorrt": "disable", "cpu": "all"}
# Ops TensorRT executes in int8 when their inputs carry Q/DQ (others stay float between DQ and Q). Clip/Relu
# are listed so a Conv→ReLU6 output is quantized after the clamp (TensorRT fuses Conv+Clip+Q); without them
# ImageNet Lite0 top-1 agreement with FP32 fell from 94.8% to 85.0% (153 photos, fake-quant numerics).
TRT_QUANTIZED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool",
                     "MaxPool", "Concat", "Clip", "Relu"]
CALIB_BATCH = 8


@dataclass
class Int8Config:
    target: str = "tensorrt"
    method: str = "minmax"
    reduce_range: bool = False
    nodes_to_exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise EdgetlError(f"unknown --int8-target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.method not in CALIB_METHODS:
            raise EdgetlError(f"unknown --calib-method {self.method!r}; choose one of {', '.join(CALIB_METHODS)}")

    @classmethod
    def for_target(cls, target: str, method: str = "minmax", reduce_range: bool | None = None) -> Int8Config:
        """None picks the target's default: 7-bit weights on the CPU target (measured below), never for TensorRT."""
        if reduce_range and target == "tensorrt":
            raise EdgetlError("--reduce-range applies to --int8-target cpu only (TensorRT uses full int8 weights)")
        return cls(target, method, (target == "cpu") if reduce_range is None else reduce_range)

    @property
    def eval_optimization(self) -> str:
        return EVAL_OPTIMIZATION[self.target]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reader(images: np.ndarray, input_name: str, progress: Callable[[int], None] | None,
            fixed_batch: int | None = None) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    if fixed_batch:  # a static-batch model takes whole batches only: tile up to one, then drop the remainder
        images = np.concatenate([images] * -(-fixed_batch // len(images))) if len(images) < fixed_batch else images
        images = images[:len(images) // fixed_batch * fixed_batch]
        batch = fixed_batch
    else:  # equal batches: ORT's histogram calibrators (entropy, percentile) stack batches into one array
        batch = max(d for d in range(1, CALIB_BATCH + 1) if len(images) % d == 0)

    class ArrayReader(CalibrationDataReader):  # type: ignore[misc]
        """Calibration batches from an in-memory array, reporting progress per batch."""

        def __init__(self) -> None:
            self._it: Iterator[int] = iter(range(0, len(images), batch))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self._it, None)
            if start is None:
                return None
            if progress is not None:
                progress(batch)
            return {input_name: images[start:start + batch]}

        def __len__(self) -> int:
            return len(images) // batch

    return ArrayReader()


def _quant_args(config: Int8Config) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantType

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.method]
    extra: dict[str, Any] = {"WeightSymmetric": True}
    if config.target == "tensorrt":
        extra |= {"ActivationSymmetric": True}
        return {"activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8, "calibrate_method": method,
                "op_types_to_quantize": TRT_QUANTIZED_OPS, "reduce_range": False, "extra_options": extra}
    return {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8, "calibrate_method": method,
            "reduce_range": config.reduce_range, "extra_options": extra}


def prepare_for_quantization(fp32_path: str | Path, out_path: Path) -> Path:
    """ORT's pre-processing (shape inference + constant folding) and unique node names for exclusion lists."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgetl.export.fp16 import name_nodes

    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)
    model = onnx.load(str(out_path))
    name_nodes(model)
    onnx.save(model, str(out_path))
    return out_path


def int8_from_onnx(prepared: str | Path, out_path: str | Path, images: np.ndarray, config: Int8Config, *,
                   metadata: dict[str, str], cache: Path | None = None,
                   progress: Callable[[int], None] | None = None) -> Path:
    """Calibrate on ``images`` and write the Q/DQ model; ``cache`` keeps the ranges for re-quantizing."""
    import onnx
    from onnxruntime.quantization import QuantFormat, quantize_static

    if len(images) == 0:
        raise EdgetlError("--int8 needs calibration images; pass --calib-data DIR with photos like the deployment's")
    model = onnx.load(str(prepared), load_external_data=False)
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix=".int8.", dir=Path(out_path).parent) as tmp:
        raw = Path(tmp) / "int8.onnx"
        reader = _reader(images, input_name, progress, probe.static_batch(model))
        quantize_static(str(prepared), str(raw), reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, nodes_to_exclude=list(config.nodes_to_exclude),
                        calibration_cache_path=cache, **_quant_args(config))
        quantized = onnx.load(str(raw))
    set_metadata(quantized, {**metadata, PRECISION_KEY: "int8", TARGET_KEY: config.target})
    return check_and_save(quantized, out_path)


def quantizable_nodes(model_path: str | Path, config: Int8Config) -> set[str]:
    """Names of nodes the quantizer may put in int8 for this target."""
    import onnx

    ops = set(TRT_QUANTIZED_OPS) if config.target == "tensorrt" else None
    model = onnx.load(str(model_path), load_external_data=False)
    return {n.name for n in model.graph.node if ops is None or n.op_type in ops}


def most_sensitive_node(prepared: str | Path, quantized: str | Path, images: np.ndarray,
                        candidates: set[str]) -> tuple[str, str, float] | None:
    """(node, op, relative error it introduces) of the quantized node that adds the most error.

    Measured on ``images`` with Q/DQ run as float fake-quant, tensor by tensor against FP32.
    """
    import onnx

    ref, cand = onnx.load(str(prepared)), onnx.load(str(quantized))
    errors = probe.relative_errors(ref, cand, images)
    return probe.worst_node(ref, errors, exclude={n.name for n in ref.graph.node} - candidates)
