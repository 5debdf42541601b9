"""The model card: what a model is and how to feed it.

It travels with every artifact — ``model.json`` beside a checkpoint, ``metadata_props`` inside an ONNX
file, the engine manifest — so deployment preprocesses exactly as training did (timm's pretrained
config, carried forward).
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError
from edgetl.io import atomic_write_json, read_json

# 2 added preprocess.crop_mode, 3 the temperature. A card is written with the oldest schema that holds it (see
# to_dict): a center-crop card at temperature 1 is still schema 1, so an older edgetl still reads it.
CARD_SCHEMA = 3
# The metadata contract of every artifact (ONNX metadata_props, AOTInductor package metadata): the card as
# JSON, plus flat keys a reader without a JSON parser (cpp_bench) or without the card can use.
METADATA_KEY = "edgetl.card"
PRECISION_KEY = "edgetl.precision"  # fp32, fp16, int8
INT8_TARGET_KEY = "edgetl.int8_target"  # tensorrt or cpu: the INT8 numerics a Q/DQ model was made for
ARCH_KEY = "edgetl.arch"
SHAPE_KEY = "edgetl.input_shape"  # "C,H,W"
MIN_BATCH_KEY = "edgetl.min_batch"
MAX_BATCH_KEY = "edgetl.max_batch"
REFIT_KEY = "temperature_refit"  # card.extra: how `edgetl calibrate` set the temperature (data, images, ECE, date)
CPU_FEATURES_KEY = "edgetl.cpu_features"  # AOTInductor CPU packages: the exporting CPU's features (edgetl.host)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")
# timm's eval crop modes: center (resize the shorter side, crop), squash (resize both sides, crop: the aspect
# ratio changes) and border (resize the longer side, pad with the mean colour: nothing is cut off).
CROP_MODES = ("center", "squash", "border")


@dataclass
class Preprocess:
    """Eval-time preprocessing: resize to size / crop_pct as ``crop_mode`` says, crop to size, normalise."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        self.input_size = tuple(int(v) for v in self.input_size)  # type: ignore[assignment]
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if self.interpolation not in INTERPOLATIONS:
            raise EdgetlError(f"unknown interpolation {self.interpolation!r}; choose one of "
                              f"{', '.join(INTERPOLATIONS)}")
        if self.crop_mode not in CROP_MODES:
            raise EdgetlError(f"unknown crop_mode {self.crop_mode!r}; choose one of {', '.join(CROP_MODES)}")
        self.crop_pct = float(self.crop_pct)
        if not self.crop_pct > 0 or len(self.input_size) != 3 or min(self.input_size) < 1 \
                or len(self.mean) != 3 or len(self.std) != 3 or 0 in self.std:
            raise EdgetlError(f"preprocessing {self.input_size} crop_pct {self.crop_pct} "
                              f"mean {self.mean} std {self.std} "
                              "is not usable: it needs a C,H,W input size, crop_pct > 0 and 3 non-zero stds")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        return self.input_size[1], self.input_size[2]

    def with_size(self, img_size: int | None) -> Preprocess:
        """The same preprocessing at another square input size (``--img-size``); None keeps it."""
        if img_size is None:
            return self
        return replace(self, input_size=(3, img_size, img_size))

    @classmethod
    def from_timm_config(cls, cfg: dict[str, Any]) -> Preprocess:
        """Build from timm's ``resolve_data_config`` output."""
        interp = str(cfg.get("interpolation", "bicubic"))
        return cls(
            input_size=tuple(cfg.get("input_size", (3, 224, 224))),  # type: ignore[arg-type]
            mean=tuple(cfg.get("mean", cls.mean)),  # type: ignore[arg-type]
            std=tuple(cfg.get("std", cls.std)),  # type: ignore[arg-type]
            interpolation=interp if interp in INTERPOLATIONS else "bicubic",
            crop_pct=float(cfg.get("crop_pct") or 0.875),
            crop_mode=str(cfg.get("crop_mode") or "center"),
        )


@dataclass
class HeadConfig:
    """The classifier head put on the backbone: dropout, and an optional hidden layer + BatchNorm."""

    dropout: float = 0.0
    hidden: int = 0


@dataclass
class ModelCard:
    """What travels with every artifact: architecture, classes, preprocessing, head and provenance.

    Saved as ``model.json`` beside checkpoints, in ONNX ``metadata_props`` and in engine sidecars, so each
    runtime preprocesses exactly as training did.
    """

    arch: str
    classes: list[str]
    preprocess: Preprocess = field(default_factory=Preprocess)
    head: HeadConfig = field(default_factory=HeadConfig)
    weights: str | None = None
    strategy: str | None = None
    seed: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0  # probabilities are softmax(logits / temperature): see edgetl.calibration
    schema: int = CARD_SCHEMA

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def temperature_from(self) -> str | None:
        """Where the temperature came from (training's validation set, or an `edgetl calibrate` refit); None at 1."""
        refit = self.extra.get(REFIT_KEY)
        if isinstance(refit, dict):
            images, data, date = refit.get("images"), refit.get("data"), refit.get("date")
            return f"refit by edgetl calibrate on {images} images of {data}, {date}"
        return "fitted on the validation set in training" if self.temperature != 1.0 else None

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data, in the oldest schema that holds it. A center-crop card leaves
        ``crop_mode`` out, and one at temperature 1 leaves ``temperature`` out, so an edgetl from before either
        still reads it. A card that needs one is schema 2 or 3: such an edgetl refuses it (edgetl before crop
        modes: "unknown keys […]; was it written by a newer edgetl?"; from now on, a newer schema: "upgrade
        edgetl") instead of preprocessing wrongly or stating other probabilities."""
        data = asdict(self)
        data["schema"] = 1
        if self.preprocess.crop_mode == "center":
            del data["preprocess"]["crop_mode"]
        else:
            data["schema"] = 2
        if self.temperature == 1.0:
            del data["temperature"]
        else:
            data["schema"] = 3
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> ModelCard:
        if not isinstance(data, dict):
            raise EdgetlError(f"{source}: not an edgetl model card (expected a JSON object)")
        schema = data.get("schema", CARD_SCHEMA)
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise EdgetlError(f"{source}: malformed model card (schema {schema!r} is not a whole number); re-create "
                              "it with `edgetl train` or `edgetl export`")
        if schema > CARD_SCHEMA:  # before the keys: a newer card has keys this edgetl lacks
            raise EdgetlError(f"{source}: card schema {schema} is newer than this edgetl supports; upgrade edgetl")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise EdgetlError(f"{source}: unknown keys {sorted(unknown)}; was it written by a newer edgetl?")
        if "arch" not in data or "classes" not in data:
            raise EdgetlError(f"{source}: missing 'arch' or 'classes'; it is not an edgetl model card")
        classes = data["classes"]
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
            raise EdgetlError(f"{source}: 'classes' must be a list of two or more class names; re-create the card "
                              "with `edgetl train` or `edgetl export`")
        try:
            data = dict(data, schema=CARD_SCHEMA)  # read: in memory every card is the current schema
            data["preprocess"] = _preprocess(data.get("preprocess"), source)
            data["head"] = HeadConfig(**data.get("head", {}))
            data["temperature"] = _temperature(data.get("temperature", 1.0), source)
            return cls(**data)
        except (TypeError, ValueError) as exc:  # a hand-edited or damaged card
            raise EdgetlError(f"{source}: malformed model card ({exc}); re-create it with "
                              "`edgetl train` or `edgetl export`") from None

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        return cls.from_dict(read_json(path), source=str(path))

    def to_metadata(self) -> dict[str, str]:
        """Key/value strings for ONNX ``metadata_props`` and engine manifests."""
        return {METADATA_KEY: json.dumps(self.to_dict(), sort_keys=True)}

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str) -> ModelCard:
        if METADATA_KEY not in props:
            raise EdgetlError(f"{source}: no edgetl metadata ({METADATA_KEY!r}), so its preprocessing is unknown; "
                              "export the model with `edgetl export`")
        try:
            data = json.loads(props[METADATA_KEY])
        except json.JSONDecodeError as exc:
            raise EdgetlError(f"{source}: its {METADATA_KEY!r} metadata is not valid JSON ({exc}); "
                              "re-export it with `edgetl export`") from None
        return cls.from_dict(data, source=source)


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of the libraries that shape a result, read without importing them."""
    names = ("edgetl", "torch", "timm", "numpy", "onnx", "onnxruntime", *extra)
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


PREPROCESS_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct")  # crop_mode may be absent: center


def _preprocess(fields_: Any, source: str) -> Preprocess:
    """The card's preprocessing, every key present: a default standing in for a lost one would deploy wrong."""
    missing = [k for k in PREPROCESS_KEYS if k not in fields_] if isinstance(fields_, dict) else list(PREPROCESS_KEYS)
    if missing:
        raise EdgetlError(f"{source}: its preprocessing lacks {', '.join(missing)}, so deployment cannot preprocess "
                          "as training did; re-create the card with `edgetl train` or `edgetl export`")
    try:
        return Preprocess(**fields_)
    except EdgetlError as exc:
        raise EdgetlError(f"{source}: {exc}; re-create the card with `edgetl train` or `edgetl export`") from None


def _temperature(value: Any, source: str) -> float:
    t = float(value)
    if not math.isfinite(t) or t <= 0:
        raise EdgetlError(f"{source}: temperature {value!r} must be a positive number; re-create the card with "
                          "`edgetl train` or `edgetl export`")
    return t
