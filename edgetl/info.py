"""What an artifact is, read from its files alone (no session, no engine deserialisation, no GPU).

Used by ``edgetl info``: it works for a TensorRT engine on a laptop without TensorRT, because the
exporter's record beside the engine says what it holds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgetl.card import METADATA_KEY, ModelCard
from edgetl.data.trained_on import trained_on
from edgetl.errors import EdgetlError
from edgetl.runtime.engine_meta import card_from_engine_metadata, engine_batch_range, engine_metadata
from edgetl.runtime.loader import artifact_kind


def _card_fields(card: ModelCard) -> dict[str, Any]:
    pre = card.preprocess
    return {
        "arch": card.arch, "classes": card.classes, "num_classes": card.num_classes,
        "preprocess": {"input_size": list(pre.input_size), "resize": int(max(pre.size) / pre.crop_pct),
                       "crop_pct": pre.crop_pct, "crop_mode": pre.crop_mode, "interpolation": pre.interpolation,
                       "mean": list(pre.mean), "std": list(pre.std)},
        "temperature": card.temperature,  # probabilities = softmax(logits / temperature)
        "temperature_from": card.temperature_from(),
        "provenance": {"weights": card.weights, "strategy": card.strategy, "seed": card.seed,
                       "metrics": card.metrics, "versions": card.versions, **card.extra},
    }


def _io(name: str, dims: list[Any], dtype: str) -> dict[str, Any]:
    return {"name": name, "shape": [d if isinstance(d, int) and d > 0 else str(d or "N") for d in dims],
            "dtype": dtype}


BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _tensor_stats(weights: Path) -> tuple[int, set[str]]:
    """(parameter count, dtypes) of a safetensors file, read from its header only. BatchNorm's running
    statistics are buffers, not parameters: left out, so the count matches timm's and PyTorch's."""
    from safetensors import SafetensorError, safe_open

    params, dtypes = 0, set()
    try:
        with safe_open(str(weights), framework="numpy") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                sl = fh.get_slice(key)
                if not key.endswith(BN_BUFFERS):
                    params += math.prod(int(d) for d in sl.get_shape())
                dtypes.add(sl.get_dtype())
    except (SafetensorError, OSError) as exc:
        raise EdgetlError(f"{weights}: not a readable safetensors checkpoint ({exc}); restore it or train "
                          "again") from None
    return params, dtypes


def _describe_torch(path: Path) -> dict[str, Any]:
    from edgetl.checkpoint import resolve_checkpoint

    weights, card_file = resolve_checkpoint(path)
    card = ModelCard.load(card_file)
    params, dtypes = _tensor_stats(weights)
    c, h, w = card.preprocess.input_size
    return {"backend": "torch", "precision": "fp16" if dtypes == {"F16"} else "fp32",
            "inputs": [_io("input", ["N", c, h, w], "float32")],
            "outputs": [_io("logits", ["N", card.num_classes], "float32")],
            "batch_range": [1, None], "weights_file": str(weights),
            "parameters": params, **_card_fields(card)}


def _describe_onnx(path: Path) -> dict[str, Any]:
    import onnx

    from edgetl.runtime.onnx_graph import read_onnx, summarize_onnx

    graph = summarize_onnx(path)
    model = read_onnx(path)
    card = ModelCard.from_metadata(graph.metadata, source=str(path))
    init_names = {i.name for i in model.graph.initializer}

    def tensors(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            if v.name in init_names:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
            out.append(_io(v.name, dims, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name))
        return out

    inputs = tensors(model.graph.input)
    dim0 = inputs[0]["shape"][0] if inputs and inputs[0]["shape"] else None
    extra_meta = {k: v for k, v in graph.metadata.items() if k != METADATA_KEY}
    return {"backend": "onnxruntime", "precision": graph.precision, "inputs": inputs,
            "outputs": tensors(model.graph.output),
            "batch_range": [dim0, dim0] if isinstance(dim0, int) else [1, None],
            "opset": graph.opset, "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "ops": {"qdq_pairs": graph.qdq_pairs, "float16_share": round(graph.float16_share, 4),
                    "nodes": sum(graph.op_counts.values()), "op_counts": dict(sorted(graph.op_counts.items()))},
            "metadata": extra_meta, **_card_fields(card)}


def _describe_engine(path: Path) -> dict[str, Any]:
    meta = engine_metadata(path)
    card = card_from_engine_metadata(path, meta)
    c, h, w = card.preprocess.input_size
    lo, hi = engine_batch_range(meta)
    try:
        import tensorrt

        here = getattr(tensorrt, "__version__", None) if hasattr(tensorrt, "Runtime") else None
    except ImportError:
        here = None
    return {"backend": "tensorrt", "precision": meta.get("precision", "unknown"),
            "inputs": [_io(meta.get("input_name", "input"), ["N", c, h, w], "float32")],
            "outputs": [_io(meta.get("output_name", "logits"), ["N", card.num_classes], "float32")],
            "batch_range": [lo, hi],
            "engine": {"tensorrt": meta.get("tensorrt"), "gpu": meta.get("gpu"),
                       "compute_capability": meta.get("compute_capability"),
                       "strongly_typed": meta.get("strongly_typed"), "sha256": meta.get("sha256"),
                       "tensorrt_here": here, "size_mb": round(path.stat().st_size / 2**20, 2)},
            **_card_fields(card)}


def _describe_aoti(path: Path) -> dict[str, Any]:
    """From the package's own AOTInductor metadata (read from the zip, nothing is loaded)."""
    from edgetl.card import MAX_BATCH_KEY, MIN_BATCH_KEY, PRECISION_KEY
    from edgetl.runtime.aoti import DEVICE_KEY, read_pt2_metadata

    meta = read_pt2_metadata(path)
    card = ModelCard.from_metadata(meta, source=str(path))
    c, h, w = card.preprocess.input_size
    return {"backend": "aoti", "precision": meta.get(PRECISION_KEY, "fp32"),
            "inputs": [_io("input", ["N", c, h, w], "float32")],
            "outputs": [_io("logits", ["N", card.num_classes], "float32")],
            "batch_range": [int(meta.get(MIN_BATCH_KEY, 1)), int(meta.get(MAX_BATCH_KEY, 1))],
            "package": {"device": meta.get(DEVICE_KEY), "cpu_isa": meta.get("AOTI_CPU_ISA"),
                       "compute_capability": meta.get("AOTI_COMPUTE_CAPABILITY") or None,
                       "size_mb": round(path.stat().st_size / 2**20, 2)},
            **_card_fields(card)}


def _export_record(path: Path) -> dict[str, Any]:
    """Source, creation time and parity verdict from the ``manifest.json`` `edgetl export` wrote beside it."""
    from edgetl.io import read_json, sha256_file
    from edgetl.runtime.engine_meta import manifest_dicts

    manifest = path.parent / "manifest.json"
    if path.is_dir() or not manifest.is_file():
        return {}
    data = read_json(manifest)
    if not isinstance(data, dict):
        return {}
    entry = next((e for e in manifest_dicts(data) if Path(str(e.get("file", ""))).name == path.name), None)
    if entry is None:  # a file copied or renamed into the folder: the manifest says nothing about it
        return {"manifest": str(manifest), "warning": f"{manifest.name} does not list {path.name}: no export "
                "record (source, versions, parity) for this file"}
    parity = entry.get("parity") if isinstance(entry.get("parity"), dict) else None
    record = {"manifest": str(manifest), "source": data.get("source"), "created": data.get("created"),
              "sha256": entry.get("sha256"), "versions": data.get("versions"),
              "parity_passed": parity.get("passed") if parity else None,
              "parity": _parity_summary(parity) if parity else None}
    judged = data.get("parity_data")
    if record["parity"] and isinstance(judged, dict) and judged.get("trained_on"):  # --val-data: training images
        record["parity"] += "; judged on images the model trained on, so its accuracy reads high"
    if entry.get("sha256") and path.is_file() and sha256_file(path) != entry["sha256"]:
        record["warning"] = ("the file is not the one this manifest describes (sha256 differs): its parity "
                             "verdict does not apply; re-run `edgetl export`")
        record["parity_passed"] = record["parity"] = None
        record["sha256_differs"] = True
    return record


def warn_if_failed_export(path: str | Path) -> None:
    """Say so (stderr) when ``path``'s manifest records that it failed its parity gate at export, or when it is
    not the file the manifest checked (sha256): predict and eval would otherwise answer from it as if it were the
    trained model."""
    from rich.console import Console
    from rich.markup import escape

    record, name = _export_record(Path(path)), escape(Path(path).name)
    if record.get("parity_passed") is False:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {name} failed its parity gate at export "
                                   f"({escape(str(record['parity']))}); its answers may not be the trained model's",
                                   highlight=False, soft_wrap=True)
    elif record.get("sha256_differs"):  # edited or replaced since export: nothing checked this file
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {name}: {escape(record['warning'])}", highlight=False,
                                   soft_wrap=True)


def _parity_summary(parity: dict[str, Any]) -> str:
    """The export's verdict in one line, with why it failed: a bare False sends the user back to the manifest."""
    verdict = "pass" if parity.get("passed") else "FAIL: " + "; ".join(map(str, parity.get("failures") or []))
    facts = [f"{parity['n']} images"] if isinstance(parity.get("n"), int) else []
    if isinstance(parity.get("top1_agreement"), (int, float)):
        facts.append(f"top-1 agreement {parity['top1_agreement']:.2%}")
    if isinstance(parity.get("ref_accuracy"), (int, float)) and isinstance(parity.get("cand_accuracy"), (int, float)):
        facts.append(f"accuracy {parity['ref_accuracy']:.2f} → {parity['cand_accuracy']:.2f}")
    return f"{verdict} ({', '.join(facts)})" if facts else verdict


def describe_artifact(path: str | Path) -> dict[str, Any]:
    """Backend, precision, inputs/outputs, batch range, classes, preprocessing, provenance and op counts."""
    p = Path(path)
    kind = artifact_kind(p)
    describe = {"torch": _describe_torch, "onnx": _describe_onnx, "tensorrt": _describe_engine,
                "aoti": _describe_aoti}[kind]
    info = {"artifact": str(p), **describe(p)}
    record = {k: v for k, v in _export_record(p).items() if v is not None}
    if record:
        info["export"] = record
    trained = trained_on(p)
    if trained is not None:
        info["trained_on"] = trained.describe()
    return info
