"""PyTorch → FP32 ONNX: dynamo exporter first, TorchScript only as a stated fallback, then slim + check.

The model card rides along in ``metadata_props`` so a runtime preprocesses exactly as training did.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.card import PRECISION_KEY, ModelCard
from edgetl.errors import EdgetlError
from edgetl.io import atomic_path, ensure_writable_dir
from edgetl.models.factory import deploy_form
from edgetl.runtime.onnx_graph import onnx_opset

if TYPE_CHECKING:
    import onnx
    from torch import nn

DEFAULT_OPSET = 18  # exported natively by torch's dynamo exporter; parsed by TensorRT 10.3+ and ORT
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MAX_DYNAMIC_BATCH = 4096
_OP_PATTERN = re.compile(r"(aten(?:::|\.)[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)")

log = logging.getLogger(__name__)


@dataclass
class OnnxExportInfo:
    """How the FP32 file was produced (recorded in the manifest)."""

    exporter: str  # "dynamo" | "torchscript"
    opset: int
    fallback_reason: str | None = None
    reparameterized: bool = False  # branches merged for inference first (models.factory.deploy_form)


def _unsupported_op(exc: BaseException) -> str | None:
    text = f"{type(exc).__name__}: {exc}"
    found = _OP_PATTERN.findall(text)
    return found[0].replace("::", ".") if found else None


def _export_dynamo(model: nn.Module, example: Any, path: Path, opset: int, static_batch: int | None) -> None:
    import torch

    dynamic = None if static_batch else ({0: torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)},)
    converter = logging.getLogger("onnxscript.version_converter")  # logs a traceback when --opset fails: we say why
    level = converter.level
    converter.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=dynamic, opset_version=opset,
                                        verbose=False)
    finally:
        converter.setLevel(level)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path))


def _export_torchscript(model: nn.Module, example: Any, path: Path, opset: int, static_batch: int | None) -> None:
    import torch

    axes = None if static_batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset)


def _export_raw(model: nn.Module, card: ModelCard, path: Path, opset: int, static_batch: int | None) -> OnnxExportInfo:
    """Export with dynamo; on failure try TorchScript and say why; if both fail, name the op."""
    import torch

    batch = static_batch or 2  # 2, not 1: a size-1 example lets the exporter specialise the batch dim
    example = torch.randn(batch, *card.preprocess.input_size)
    try:
        _export_dynamo(model, example, path, opset, static_batch)
        return OnnxExportInfo("dynamo", opset)
    except Exception as exc:  # the dynamo exporter raises many internal types
        first = exc
    reason = f"{type(first).__name__}: {str(first).splitlines()[0][:200] if str(first) else ''}"
    log.warning("dynamo exporter failed (%s); falling back to the TorchScript exporter", reason)
    try:
        _export_torchscript(model, example, path, opset, static_batch)
    except Exception as second:
        op = _unsupported_op(second) or _unsupported_op(first)
        what = f"operator {op}" if op else f"an unsupported construct ({reason})"
        raise EdgetlError(f"{card.arch}: cannot export to ONNX opset {opset}: {what} has no ONNX conversion "
                          "(dynamo and TorchScript exporters both failed); try another --opset or replace "
                          "that layer") from None
    return OnnxExportInfo("torchscript", opset, fallback_reason=reason)


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Replace/insert ``props`` in ``metadata_props`` (keys not named are kept)."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in [*keep, *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def check_and_save(model: onnx.ModelProto, out_path: str | Path) -> Path:
    """Full ``onnx.checker`` check and shape inference, then an atomic write."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(inferred, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise EdgetlError(f"{out_path}: the exported graph is not valid ONNX ({str(exc).splitlines()[0][:200]}); "
                          "report this model/opset combination") from None
    with atomic_path(out_path) as tmp:
        onnx.save(inferred, str(tmp))
    return Path(out_path)


def onnx_from_model(model: nn.Module, card: ModelCard, out_path: str | Path, *, opset: int | None = None,
                    static_batch: int | None = None, info: list[OnnxExportInfo] | None = None) -> Path:
    """FP32 ONNX of ``model`` (dynamic batch unless ``static_batch``), slimmed, checked, card in metadata.

    ``info``, when given, receives how the file was exported (exporter, opset, fallback reason).
    """
    import onnx
    import onnxslim
    import torch

    opset = opset or DEFAULT_OPSET
    if static_batch is not None and static_batch < 1:
        raise EdgetlError(f"--static-batch {static_batch} must be at least 1")
    out = Path(out_path)
    model, merged = deploy_form(model.eval().float().cpu())
    ensure_writable_dir(out.parent)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export.") as tmp, torch.no_grad():
        raw = Path(tmp) / "raw.onnx"
        result = _export_raw(model, card, raw, opset, static_batch)
        result.reparameterized = merged
        exported = onnx.load(str(raw))
    written = onnx_opset(exported) or opset
    if written != opset:  # torch writes its own opset, then converts; a failed conversion only logs
        raise EdgetlError(f"--opset {opset}: torch's exporter wrote opset {written} and could not convert this "
                          f"graph to {opset}; use --opset {written} or higher")
    slim = onnxslim.slim(exported)
    set_metadata(slim, {**card.to_metadata(), PRECISION_KEY: "fp32"})
    check_and_save(slim, out)
    if info is not None:
        info.append(result)
    return out


def onnx_from_checkpoint(checkpoint: str | Path, out_path: str | Path, **kw: Any) -> Path:
    """FP32 ONNX of a run directory or ``.safetensors`` checkpoint (card from ``model.json``)."""
    from edgetl.checkpoint import load_model

    model, card = load_model(checkpoint)
    return onnx_from_model(model, card, out_path, **kw)


def toposort(model: onnx.ModelProto) -> None:
    """Order nodes so every input is produced before use (ORT's float16 converter appends its Casts)."""
    graph = model.graph
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise EdgetlError(f"graph has a cycle or a missing input near node {rest[0].name!r}; re-export the model")
        pending = rest
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
