"""Look inside an ONNX graph: every intermediate tensor, run on real images with ONNX Runtime.

Used to *measure* which nodes overflow or lose accuracy in FP16 and which layers are most sensitive to
INT8, instead of guessing. Artifacts themselves are judged through the runtime's runners (edgetl.parity);
this module only inspects in-memory graph variants.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

FLOAT_TYPES = (1, 10)  # TensorProto.FLOAT, FLOAT16


def node_outputs(model: onnx.ModelProto) -> dict[str, str]:
    """Tensor name → producing node name, for every float node output (topological order)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    out: dict[str, str] = {}
    for node in inferred.graph.node:
        for name in node.output:
            if name and types.get(name) in FLOAT_TYPES:
                out[name] = node.name
    return out


def expose(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs also include ``names`` (typed from shape inference)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {v.name: v for v in inferred.graph.value_info}
    existing = {o.name for o in inferred.graph.output}
    for name in names:
        if name not in existing and name in infos:
            inferred.graph.output.append(infos[name])
    return inferred


def session(model: onnx.ModelProto, optimize: bool = False) -> Any:
    """An in-memory CPU session; optimisation off by default so every named tensor still exists."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def static_batch(model_or_session: Any) -> int | None:
    """The fixed batch size of the first input, or None when it is dynamic."""
    if hasattr(model_or_session, "get_inputs"):
        dim = model_or_session.get_inputs()[0].shape[0]
        return dim if isinstance(dim, int) and dim > 0 else None
    dim0 = model_or_session.graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim0.dim_value) if dim0.dim_value > 0 else None


def run_batches(sess: Any, images: np.ndarray, batch: int = 8) -> Iterator[dict[str, np.ndarray]]:
    """Every output of ``sess`` (by name) for each chunk of ``images`` (static batches padded, then trimmed)."""
    names = [o.name for o in sess.get_outputs()]
    input_name = sess.get_inputs()[0].name
    fixed = static_batch(sess)
    batch = fixed or batch
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        n = len(chunk)
        if fixed and n < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
        outs = sess.run(names, {input_name: chunk})
        yield {k: v[:n] if fixed else v for k, v in zip(names, outs, strict=True)}


def absmax(model: onnx.ModelProto, images: np.ndarray, batch: int = 8) -> dict[str, float]:
    """Largest absolute value each float node output reaches on ``images``."""
    tensors = list(node_outputs(model))
    sess = session(expose(model, tensors))
    peak: dict[str, float] = {}
    for outs in run_batches(sess, images, batch):
        for name in tensors:
            if name in outs:
                value = np.abs(outs[name].astype(np.float32))
                finite = value[np.isfinite(value)]
                peak[name] = max(peak.get(name, 0.0), float(finite.max(initial=0.0)))
    return peak


def relative_errors(ref: onnx.ModelProto, cand: onnx.ModelProto, images: np.ndarray,
                    batch: int = 8) -> dict[str, float]:
    """‖cand − ref‖ / ‖ref‖ per shared float node output (inf where the candidate is not finite)."""
    names = [n for n in node_outputs(ref) if n in set(node_outputs(cand))]
    ref_sess, cand_sess = session(expose(ref, names)), session(expose(cand, names))
    num: dict[str, float] = dict.fromkeys(names, 0.0)
    den: dict[str, float] = dict.fromkeys(names, 0.0)
    for r, c in zip(run_batches(ref_sess, images, batch), run_batches(cand_sess, images, batch), strict=True):
        for name in names:
            if name not in r or name not in c:
                continue
            a, b = r[name].astype(np.float64), c[name].astype(np.float64)
            num[name] += float(np.sum((a - b) ** 2)) if np.all(np.isfinite(b)) else float("inf")
            den[name] += float(np.sum(a ** 2))
    return {n: float(np.sqrt(num[n] / den[n])) if den[n] > 0 else (0.0 if num[n] == 0 else float("inf"))
            for n in names}


def worst_node(model: onnx.ModelProto, errors: dict[str, float], exclude: set[str]) -> tuple[str, str, float] | None:
    """(node name, op, introduced error) of the node adding the most relative error."""
    best: tuple[str, str, float] | None = None
    for node in model.graph.node:
        if node.name in exclude:
            continue
        outs = [errors[o] for o in node.output if o in errors]
        if not outs:
            continue
        ins = [errors.get(i, 0.0) for i in node.input]
        out_err, in_err = max(outs), max(ins, default=0.0)
        introduced = float("inf") if not np.isfinite(out_err) and np.isfinite(in_err) else out_err - in_err
        if np.isnan(introduced):
            continue
        if best is None or introduced > best[2]:
            best = (node.name, node.op_type, introduced)
    return best
