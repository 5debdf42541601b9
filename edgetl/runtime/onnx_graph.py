"""What an ONNX graph computes in: Q/DQ pairs mean INT8, float16 weights mean FP16.

The precision is read from the graph itself rather than the file name, so a report can never label an
FP32 file "int8" because of how it was named.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.errors import EdgetlError

if TYPE_CHECKING:
    import onnx

QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                       "ConvInteger", "DynamicQuantizeLinear"})


@dataclass
class GraphSummary:
    precision: str  # fp32 | fp16 | int8
    op_counts: dict[str, int] = field(default_factory=dict)
    qdq_pairs: int = 0
    float16_share: float = 0.0  # fraction of float initializer elements stored as float16
    opset: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "qdq_pairs": self.qdq_pairs,
                "float16_share": round(self.float16_share, 4), "opset": self.opset,
                "op_counts": dict(sorted(self.op_counts.items()))}


def _nodes(graph: Any) -> Any:
    """Every node, including those inside If/Loop subgraphs."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and len(attr.g.node):
                yield from _nodes(attr.g)


def read_onnx(path: str | Path) -> Any:
    """The ``onnx.ModelProto`` of ``path`` without external weights; a one-line error if it is not ONNX."""
    import onnx

    if not Path(path).is_file():
        raise EdgetlError(f"{path}: file not found; check the path, or export it with `edgetl export`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx.DecodeError and friends, from protobuf
        raise EdgetlError(f"{path}: not a readable ONNX file ({type(exc).__name__}); re-export it with "
                          "`edgetl export`") from None
    if not model.graph.node:
        raise EdgetlError(f"{path}: not an ONNX model (empty or truncated file); re-export it with `edgetl export`")
    return model


def summarize_onnx(path: str | Path) -> GraphSummary:
    """Op counts and precision of an ONNX file (weights stored externally are not read)."""
    from onnx import TensorProto

    model = read_onnx(path)
    ops = Counter(n.op_type for n in _nodes(model.graph))
    sizes: Counter[int] = Counter()
    for init in model.graph.initializer:
        n = 1
        for d in init.dims:
            n *= int(d)
        sizes[init.data_type] += n
    floats = sizes[TensorProto.FLOAT] + sizes[TensorProto.FLOAT16] + sizes[TensorProto.BFLOAT16]
    share = sizes[TensorProto.FLOAT16] / floats if floats else 0.0
    qdq = min(ops["QuantizeLinear"], ops["DequantizeLinear"])
    if any(ops[o] for o in QUANT_OPS):
        precision = "int8"
    elif share >= 0.5:
        precision = "fp16"
    else:
        precision = "fp32"
    meta = {p.key: p.value for p in model.metadata_props}
    return GraphSummary(precision, dict(ops), qdq, share, onnx_opset(model), meta)


def onnx_opset(model: onnx.ModelProto) -> int | None:
    """The default-domain (ai.onnx) opset a model imports; None when it names none."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
