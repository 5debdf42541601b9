"""FP32 ONNX → FP16 ONNX (float16 weights and compute, float32 inputs/outputs).

Which nodes stay in float32 is measured, not guessed: nodes whose FP32 activations on the calibration
images come near the float16 range are kept in float32 up front; then, while the FP16 graph gives
non-finite outputs or disagrees with FP32 on those images, the node that *introduces* the largest
relative error (its output error minus its inputs' error) is moved back to float32, one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.card import PRECISION_KEY
from edgetl.errors import EdgetlError
from edgetl.export import probe
from edgetl.export.onnx import check_and_save, set_metadata, toposort

if TYPE_CHECKING:
    import onnx

FP16_MAX = 65504.0
RANGE_HEADROOM = 0.25  # keep a node in float32 when its FP32 inputs or outputs exceed a quarter of the FP16 range
MAX_ROUNDS = 24
ERROR_PROBE_IMAGES = 16


class NonFiniteOutputs(Exception):
    """The FP16 graph still produces inf/NaN on the calibration images; nothing was written."""


@dataclass
class Fp16Report:
    kept_fp32: list[dict[str, Any]] = field(default_factory=list)  # {"node", "op", "reason"}
    rounds: int = 0
    agreement: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name (block lists and reports refer to nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def convert(model: onnx.ModelProto, keep_fp32: set[str]) -> onnx.ModelProto:
    """ORT's float16 converter with float32 I/O and ``keep_fp32`` node names blocked."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    half = convert_float_to_float16(copy, keep_io_types=True, node_block_list=sorted(keep_fp32),
                                    disable_shape_infer=False)
    drop_round_trip_casts(half)
    toposort(half)
    return half


def drop_round_trip_casts(model: onnx.ModelProto) -> None:
    """Remove float32 → float16 → float32 Cast pairs between two float32 nodes.

    ORT's converter casts a kept-float32 node's output to float16 even when the next node is also kept in
    float32, so a value past 65504 becomes inf between them; the pair is rewired away here.
    """
    import onnx

    def cast_to(node: onnx.NodeProto) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    producers = {o: n for n in model.graph.node for o in n.output}
    types = _elem_types(model)
    drop: set[str] = set()
    for down in model.graph.node:
        up = producers.get(down.input[0]) if down.input else None
        if cast_to(down) != onnx.TensorProto.FLOAT or up is None or cast_to(up) != onnx.TensorProto.FLOAT16:
            continue
        source = producers.get(up.input[0])
        if source is None or source.op_type == "Cast" or down.output[0] in outputs \
                or types.get(up.input[0]) != onnx.TensorProto.FLOAT:  # bool → f16 → f32 is a real cast (EdgeNeXt)
            continue
        for user in consumers.get(down.output[0], []):
            user.input[:] = [up.input[0] if i == down.output[0] else i for i in user.input]
        drop.add(down.name)
        if all(cast_to(u) == onnx.TensorProto.FLOAT for u in consumers.get(up.output[0], [])):
            drop.add(up.name)
    kept = [n for n in model.graph.node if n.name not in drop]
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value whose type shape inference can tell."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {v.name: v.type.tensor_type.elem_type for v in values}


def _logits(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    sess = probe.session(model, optimize=True)
    first = sess.get_outputs()[0].name
    return np.concatenate([outs[first] for outs in probe.run_batches(sess, images, 16)]).astype(np.float32)


def fp16_from_onnx(fp32_path: str | Path, out_path: str | Path, images: np.ndarray,
                   min_agreement: float = 0.995, max_rounds: int = MAX_ROUNDS,
                   progress: Callable[[int], None] | None = None) -> Fp16Report:
    """Write the FP16 model to ``out_path``; raise :class:`NonFiniteOutputs` rather than write a broken one.

    ``progress(1)`` after each round: a transformer can take many rounds (a ViT took 11 minutes on 2 cores).
    """
    import onnx

    if len(images) == 0:
        raise EdgetlError("--fp16 needs images to find the ops that overflow in float16; pass --calib-data DIR")
    model = onnx.load(str(fp32_path))
    name_nodes(model)
    report = Fp16Report()
    keep: set[str] = set()
    peaks = probe.absmax(model, images)
    for node in model.graph.node:  # a node overflows if it reads *or* writes values past the float16 range
        peak = max((peaks.get(t, 0.0) for t in [*node.input, *node.output]), default=0.0)
        if peak > FP16_MAX * RANGE_HEADROOM:
            keep.add(node.name)
            report.kept_fp32.append({"node": node.name, "op": node.op_type,
                                     "reason": f"FP32 activation reaches {peak:.3g}"})
    ref = _logits(model, images)
    probe_images = images[:ERROR_PROBE_IMAGES]
    for report.rounds in range(1, max_rounds + 1):
        half = convert(model, keep)
        out = _logits(half, images)
        finite = bool(np.all(np.isfinite(out)))
        report.agreement = float(np.mean(out.argmax(1) == ref.argmax(1))) if finite else 0.0
        if finite and report.agreement >= min_agreement:
            break
        errors = probe.relative_errors(model, half, probe_images if finite else images)
        worst = probe.worst_node(model, errors, keep)
        if worst is None:
            break
        keep.add(worst[0])
        report.kept_fp32.append({"node": worst[0], "op": worst[1],
                                 "reason": "non-finite in FP16" if not np.isfinite(worst[2])
                                 else f"adds {worst[2]:.2e} relative error"})
        if progress is not None:
            progress(1)
    if not finite:
        raise NonFiniteOutputs(f"{out_path}: the FP16 model still gives inf/NaN on {len(images)} calibration "
                               f"image(s) after keeping {len(keep)} node(s) in float32; not written — use FP32")
    set_metadata(half, {PRECISION_KEY: "fp16"})
    check_and_save(half, out_path)
    return report
