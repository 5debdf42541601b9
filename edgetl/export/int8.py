"""FP32 ONNX → INT8 ONNX with explicit QuantizeLinear/DequantizeLinear, by post-training calibration.

Two targets, because the fast integer kernels differ:

* ``tensorrt``: int8 activations and weights, both symmetric (zero point 0), weights per output channel,
  placed the way TensorRT fuses them (the layout NVIDIA ModelOpt writes): Q/DQ on the *inputs* of
  convolutions, GEMMs, pooling and residual Adds only, never between a Conv and its ReLU/ReLU6; no Q/DQ on
  the Conv branch of a residual Add (TensorRT folds the Add into that Conv); biases stay float. Judged with
  ONNX Runtime graph optimisation off (Q/DQ as float fake-quant, as TensorRT computes).
* ``cpu``: uint8 activations, int8 per-channel weights — what ONNX Runtime's x86 kernels run fast. Judged
  with ONNX Runtime's default optimisation (fused integer kernels). ``reduce_range`` (7-bit weights, the
  CPU default) avoids the int16 saturation of x86 CPUs without VNNI; on a CPU with VNNI (the AVX512-VNNI
  host measured below) full 8-bit weights (``--no-reduce-range``) are twice as accurate at the same speed.

Both targets get **bias correction** (``edgetl.export.bias_correction``): the mean output shift that rounding
each layer's weights causes is taken out of its float bias before the model is quantized again.

Measured with ``python benchmarks/export.py --int8-study --modelopt-python /tmp/mo-venv/bin/python``
(benchmarks/results/export.json): ImageNet EfficientNet-Lite0 with its 1000-class head, 128 calibration
photos of hymenoptera/train, judged on the 153 held-out hymenoptera/val photos against their ImageNet
labels (ant = 310, bee = 309); FP32 top-1 84.97%. One photo is 0.65 points, so top-1 moves by a photo or
two with the calibration subset; KL = mean KL(softmax FP32 ‖ softmax INT8) is the steadier figure.

==========================================================  =====  =====  ======  ======
variant (TensorRT target: fake-quant; cpu: fused kernels)   top-1  drop   agree   KL
==========================================================  =====  =====  ======  ======
trt, layout before this study (Q/DQ on Conv outputs, before  83.66   1.31  94.8%   .0108
ReLU6 too; int32 bias), minmax
trt, Q/DQ on layer inputs, float bias, Add fusion, minmax    83.01   1.96  94.1%   .0096
trt, + bias correction                                       84.31   0.65  97.4%   .0051
trt, + bias correction, ORT percentile (99.999)              83.66   1.31  98.7%   .0042
trt, + bias correction, ORT entropy                          = minmax: ORT's default 128 bins = its
                                                             128 quantized bins, no threshold to pick
trt, + bias correction + stem float (**default**)            84.97   0.00  99.3%   .0039
trt, + bias correction + stem and classifier float           84.97   0.00  99.3%   .0038
trt, + bias correction + stem float, percentile              84.31   0.65  98.7%   .0034
NVIDIA ModelOpt 0.47 ``quantize`` int8, max / entropy        83.01 / 84.31 (94.1% / 96.7%), KL .0093 / .0110
cpu reduce_range, minmax (before)                            82.35   2.61  93.5%   .0445
cpu reduce_range, + bias correction + stem float (default)   84.97   0.00  97.4%   .0064
cpu 8-bit weights, + bias correction + stem float            83.01   1.96  98.0%   .0030
==========================================================  =====  =====  ======  ======

Over four calibration subsets (seeds 0–3) the default TensorRT configuration loses 0.49 points on average
(0, 0, 1.31, 0.65; KL .0041), in line with the ~0.5 point expected of Lite0 on ImageNet, and percentile
calibration 0.82 (KL .0037): a slightly lower KL that does not show in top-1, at 4x the calibration time,
so minmax stays the default. ORT CPU latency (same file): INT8 cpu target 2.2x FP32 on Lite0, 3.0–3.3x on
ResNet-18 at batch 1 and 8.

Tooling choice: ModelOpt (``nvidia-modelopt[onnx]`` 0.47.0) installs and runs on CPU in a separate venv, but
pins ``onnx~=1.21``, ``onnxruntime-gpu~=1.24`` and ``cupy-cuda12x`` (it would downgrade onnx 1.23 and replace
onnxruntime 1.32 here). On the same FP32 graph and calibration photos it writes the same Q/DQ layout as
above (inputs only, float bias, residual-Add fusion; weights as float + Q/DQ) and is no more accurate than
ONNX Runtime's quantizer with that layout (KL .0093 vs .0096), and less than half as accurate as edgetl's
default with bias correction (.0039). edgetl keeps ONNX Runtime's quantizer (``quantize_static``, QDQ);
ModelOpt is never a dependency.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from inspect import signature
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.card import INT8_TARGET_KEY, PRECISION_KEY
from edgetl.errors import EdgetlError
from edgetl.export import probe
from edgetl.export.bias_correction import corrected_biases, input_means
from edgetl.export.onnx import check_and_save, set_metadata
from edgetl.export.options import CALIB_METHODS, TARGETS

if TYPE_CHECKING:
    import onnx

# What each target's artifact is judged with (OrtRunner ``optimization``).
EVAL_OPTIMIZATION = {"tensorrt": "disable", "cpu": "all"}
# Ops whose *inputs* get Q/DQ for TensorRT (outputs never: the next layer's input Q/DQ quantizes them).
# Clip/Relu are not listed, so a Conv→ReLU6 output is quantized once, after the clamp, where TensorRT fuses
# Conv+Clip+Q; a Q/DQ before the clamp (the old layout) spent int8 levels on values ReLU6 throws away.
TRT_QUANTIZED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool",
                     "MaxPool", "Concat"]
LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CALIB_BATCH = 8
BIAS_CORRECTION_IMAGES = 64  # mean input images for bias correction (more changes the means by < 1%)


@dataclass
class Int8Config:
    """How a model is quantized: target numerics, calibration method, ranges, layers kept in float."""

    target: str = "tensorrt"
    method: str = "minmax"
    reduce_range: bool = False
    nodes_to_exclude: list[str] = field(default_factory=list)
    bias_correction: bool = True

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise EdgetlError(f"unknown --int8-target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.method not in CALIB_METHODS:
            raise EdgetlError(f"unknown --calib-method {self.method!r}; choose one of {', '.join(CALIB_METHODS)}")

    @classmethod
    def for_target(cls, target: str, method: str = "minmax", reduce_range: bool | None = None,
                   bias_correction: bool = True) -> Int8Config:
        """None picks the target's default: 7-bit weights on the CPU target (safe without VNNI), never for TensorRT."""
        if reduce_range and target == "tensorrt":
            raise EdgetlError("--reduce-range applies to --int8-target cpu only (TensorRT uses full int8 weights)")
        return cls(target, method, (target == "cpu") if reduce_range is None else reduce_range,
                   bias_correction=bias_correction)

    @property
    def eval_optimization(self) -> str:
        return EVAL_OPTIMIZATION[self.target]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_reader(images: np.ndarray, input_name: str, progress: Callable[[int], None] | None,
                       fixed_batch: int | None = None) -> Any:
    """ONNX Runtime's calibration feed over ``images``, in batches the quantizer's calibrators can stack."""
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
        # TensorRT keeps biases in float (an int32 bias would also make bias correction round off again).
        extra |= {"ActivationSymmetric": True, "QuantizeBias": False,
                  "OpTypesToExcludeOutputQuantization": TRT_QUANTIZED_OPS}
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


# --- Q/DQ layout for TensorRT ---

def fuse_residual_adds(model: onnx.ModelProto) -> int:
    """Drop the Q/DQ on the Conv branch of each residual Add, so TensorRT folds the Add into that Conv.

    The residual (shortcut) input keeps its Q/DQ. When both inputs come from convolutions (a ResNet
    downsample block) the branch furthest from the graph input is the one fused, as ModelOpt does.
    Returns how many Adds were changed.
    """
    nodes = list(model.graph.node)
    inits = {i.name for i in model.graph.initializer}
    producer = {o: n for n in nodes for o in n.output}
    uses: dict[str, int] = {o.name: 1 for o in model.graph.output}
    depth: dict[str, int] = {}
    for n in nodes:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1
        depth[n.name] = 1 + max((depth[producer[i].name] for i in n.input if i in producer), default=0)
    removed: set[int] = set()
    fused = 0
    for add in nodes:
        if add.op_type != "Add" or len(add.input) != 2 or any(i in inits for i in add.input):
            continue
        branches = []
        for idx, name in enumerate(add.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            src = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            if q is None or dq is None or src is None or src.op_type not in LINEAR_OPS:
                continue
            if uses.get(q.input[0]) == 1 and uses.get(q.output[0]) == 1 and uses.get(name) == 1:
                branches.append((depth[src.name], idx, q, dq))
        if not branches:
            continue
        _, idx, q, dq = max(branches, key=lambda b: b[0])
        add.input[idx] = q.input[0]
        removed |= {id(q), id(dq)}
        fused += 1
    if removed:
        keep = [n for n in nodes if id(n) not in removed]
        del model.graph.node[:]
        model.graph.node.extend(keep)
        used = {i for n in keep for i in n.input} | {o.name for o in model.graph.output}
        orphans = {i for n in nodes if id(n) in removed for i in n.input if i in inits and i not in used}
        kept_inits = [i for i in model.graph.initializer if i.name not in orphans]  # the dropped pairs' scales
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept_inits)
    return fused


def _quantize(source: str | Path, out: Path, images: np.ndarray, config: Int8Config, input_name: str,
              fixed_batch: int | None, cache: Path, progress: Callable[[int], None] | None) -> None:
    from onnxruntime.quantization import QuantFormat, quantize_static

    reader = calibration_reader(images, input_name, progress, fixed_batch)
    # The range cache came with onnxruntime 1.27, which has no Python 3.10 wheels (JetPack 6): before it, each
    # pass (bias correction, a --max-accuracy-drop retry) calibrates again, on the model as corrected so far.
    cached = {"calibration_cache_path": cache} if "calibration_cache_path" in signature(quantize_static).parameters \
        else {}
    quantize_static(str(source), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    nodes_to_exclude=list(config.nodes_to_exclude), **cached, **_quant_args(config))


def int8_from_onnx(prepared: str | Path, out_path: str | Path, images: np.ndarray, config: Int8Config, *,
                   metadata: dict[str, str], cache: Path | None = None,
                   progress: Callable[[int], None] | None = None, means: dict[str, np.ndarray] | None = None,
                   report: dict[str, Any] | None = None) -> Path:
    """Calibrate on ``images`` and write the Q/DQ model.

    ``cache`` keeps the activation ranges for re-quantizing; ``means`` (from :func:`input_means`) saves
    the FP32 pass of bias correction when quantizing the same model again; ``report`` receives what was
    done (layers bias-corrected, residual Adds fused).
    """
    import onnx

    if len(images) == 0:
        raise EdgetlError("--int8 needs calibration images; pass --calib-data DIR with photos like the deployment's")
    model = onnx.load(str(prepared), load_external_data=False)
    input_name = model.graph.input[0].name
    fixed = probe.static_batch(model)
    info: dict[str, Any] = {"bias_corrected_layers": 0, "fused_residual_adds": 0}
    with tempfile.TemporaryDirectory(prefix=".int8.", dir=Path(out_path).parent) as tmp:
        raw = Path(tmp) / "int8.onnx"
        cache = cache or Path(tmp) / "calibration.json"
        _quantize(prepared, raw, images, config, input_name, fixed, cache, progress)
        if config.bias_correction:
            full = onnx.load(str(prepared))
            if means is None:
                means = input_means(full, images[:BIAS_CORRECTION_IMAGES])
            fixed_model, info["bias_corrected_layers"] = corrected_biases(full, onnx.load(str(raw)), means)
            corrected = Path(tmp) / "corrected.onnx"
            onnx.save(fixed_model, str(corrected))
            _quantize(corrected, raw, images, config, input_name, fixed, cache, None)  # ranges from the cache
        quantized = onnx.load(str(raw))
    if config.target == "tensorrt":
        info["fused_residual_adds"] = fuse_residual_adds(quantized)
    if report is not None:
        report.update(info)
    set_metadata(quantized, {**metadata, PRECISION_KEY: "int8", INT8_TARGET_KEY: config.target})
    return check_and_save(quantized, out_path)


REMOVABLE_ACTIVATIONS = ("Clip", "Relu")  # the CPU layout folds these into the previous layer's output Q


def quantizable_nodes(model_path: str | Path, config: Int8Config) -> set[str]:
    """Names of the nodes that run in int8 for this target: the layers --max-accuracy-drop may keep float.

    Not ReLU/ReLU6 on the CPU target: there they are folded into the previous layer's output quantization,
    so keeping one "in float" would change nothing.
    """
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    if config.target == "tensorrt":
        return {n.name for n in model.graph.node if n.op_type in TRT_QUANTIZED_OPS}
    return {n.name for n in model.graph.node if n.op_type not in REMOVABLE_ACTIVATIONS}


def _flowing_values(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where each quantized tensor's name holds what its consumers receive: DQ(Q(x)), not x.

    For the CPU layout, whose Q/DQ sit on layer outputs (and stand in for the ReLU6 they absorbed), this
    is the value that corresponds to the FP32 tensor of the same name.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name for i in out.graph.initializer}
    outputs = {o.name for o in out.graph.output}
    fixed = inits | {i.name for i in out.graph.input}  # names that cannot be renamed
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in out.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    renames: dict[str, str] = {}
    for q in out.graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in fixed or q.input[0] in outputs:
            continue
        dqs = [d for d in consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"]
        if len(dqs) == 1 and dqs[0].output[0] not in outputs:
            renames[q.input[0]] = q.input[0] + "__raw"
            renames[dqs[0].output[0]] = q.input[0]
    for n in out.graph.node:
        n.input[:] = [renames.get(i, i) for i in n.input]
        n.output[:] = [renames.get(o, o) for o in n.output]
    return out


def most_sensitive_node(prepared: str | Path, quantized: str | Path, images: np.ndarray,
                        candidates: set[str], target: str = "tensorrt") -> tuple[str, str, float] | None:
    """(node, op, relative error it introduces) of the quantized node that adds the most error.

    Measured on ``images`` with Q/DQ run as float fake-quant, tensor by tensor against FP32. TensorRT
    layout: a layer owns the Q/DQ on its inputs, so its error is compared before the next layer's Q/DQ.
    CPU layout: a layer owns the Q/DQ on its output (which also stands in for a folded ReLU6), so the
    values compared are those that flow out of the Q/DQ.
    """
    import onnx

    ref, cand = onnx.load(str(prepared)), onnx.load(str(quantized))
    if target == "cpu":
        cand = _flowing_values(cand)
    errors = probe.relative_errors(ref, cand, images)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in ref.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    best: tuple[str, str, float] | None = None
    for node in ref.graph.node:
        if node.name not in candidates:
            continue
        outs = [errors[o] for o in node.output if o in errors]
        after = consumers.get(node.output[0], [])
        if not outs and len(after) == 1 and after[0].op_type in REMOVABLE_ACTIVATIONS:
            outs = [errors[o] for o in after[0].output if o in errors]  # output renamed to the folded ReLU6's
        if not outs:
            continue
        out_err, in_err = max(outs), max((errors.get(i, 0.0) for i in node.input), default=0.0)
        introduced = float("inf") if not np.isfinite(out_err) and np.isfinite(in_err) else out_err - in_err
        if not np.isnan(introduced) and (best is None or introduced > best[2]):
            best = (node.name, node.op_type, float(introduced))
    return best
