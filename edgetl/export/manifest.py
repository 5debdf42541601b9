"""``manifest.json``: every artifact with its precision, I/O, batch range, hashes and parity figures.

The manifest is what a deployment reads first; the card inside it (and inside each ONNX file's
``metadata_props``) says how to preprocess, and each engine entry says which TensorRT and GPU it needs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgetl.card import ModelCard
from edgetl.errors import EdgetlError
from edgetl.io import atomic_write_json, read_json, sha256_file
from edgetl.runtime.onnx_graph import onnx_opset

MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = "edgetl.export/1"
ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 6: "int32", 7: "int64", 2: "uint8", 3: "int8"}


@dataclass
class Artifact:
    """One exported file: format, precision, I/O, size, sha256 and its parity record."""

    file: str
    format: str  # onnx | tensorrt | aoti
    precision: str  # fp32 | fp16 | int8
    sha256: str = ""
    bytes: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    parity: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    """``manifest.json`` of an export folder: the card, every artifact and how it was judged and built."""

    card: dict[str, Any]
    source: dict[str, Any]
    batch: dict[str, Any]
    versions: dict[str, str]
    artifacts: list[Artifact] = field(default_factory=list)
    parity_data: dict[str, Any] = field(default_factory=dict)
    engine_build: dict[str, Any] = field(default_factory=dict)
    passed: bool = True
    failures: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    schema: str = MANIFEST_SCHEMA

    @property
    def model_card(self) -> ModelCard:
        return ModelCard.from_dict(self.card, source=MANIFEST_FILE)

    def artifact(self, precision: str, fmt: str = "onnx") -> Artifact:
        for a in self.artifacts:
            if a.precision == precision and a.format == fmt:
                return a
        raise KeyError(f"no {precision} {fmt} artifact in the manifest")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / MANIFEST_FILE
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        p = Path(path)
        data = read_json(p / MANIFEST_FILE if p.is_dir() else p)
        if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
            raise EdgetlError(f"{p}: not an edgetl export manifest (schema {MANIFEST_SCHEMA}); re-run `edgetl export`")
        data = dict(data)
        data["artifacts"] = [Artifact(**a) for a in data.get("artifacts", [])]
        return cls(**data)


def _io(values: Any) -> list[dict[str, Any]]:
    out = []
    for v in values:
        tt = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
        out.append({"name": v.name, "shape": shape, "dtype": ONNX_DTYPES.get(tt.elem_type, str(tt.elem_type))})
    return out


def onnx_artifact(path: Path, precision: str, details: dict[str, Any] | None = None) -> Artifact:
    """An artifact entry for an ONNX file: I/O names, shapes, dtypes, opset, size and sha256."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = onnx_opset(model)
    return Artifact(file=path.name, format="onnx", precision=precision, sha256=sha256_file(path),
                    bytes=path.stat().st_size, inputs=_io(model.graph.input), outputs=_io(model.graph.output),
                    details={"opset": opset, **(details or {})})
