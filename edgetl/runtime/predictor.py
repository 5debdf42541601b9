"""Image files or arrays → top-k answers, through any runner, with the artifact's own training preprocessing."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetl.data.images import BadImage, decode_rgb, map_images, to_rgb
from edgetl.data.transforms import eval_array
from edgetl.errors import EdgetlError
from edgetl.runtime.base import Runner

ImageLike = str | Path | Image.Image | np.ndarray


@dataclass
class Prediction:
    source: str
    top: list[tuple[str, float]]  # (class name, probability), best first

    @property
    def label(self) -> str:
        return self.top[0][0]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "top": [{"class": c, "prob": p} for c, p in self.top]}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _as_image(item: ImageLike) -> tuple[str, Image.Image]:
    if isinstance(item, Image.Image):
        return "<image>", to_rgb(item)  # as training decodes files: transparency on white
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise EdgetlError(f"image array of shape {item.shape} {item.dtype}: expected HxWx3 uint8 RGB")
        return "<array>", Image.fromarray(item, "RGB")
    try:
        return str(item), decode_rgb(item)  # on a decoding thread: map_images silences PIL's warnings
    except BadImage as exc:
        raise EdgetlError(f"{item}: {exc}; pass a JPEG/PNG image") from None


class Predictor:
    """Top-k classification with exactly the preprocessing recorded in the runner's card."""

    def __init__(self, runner: Runner, batch_size: int = 32) -> None:
        self.runner = runner
        self.batch_size = batch_size

    def preprocess(self, images: Iterable[ImageLike]) -> np.ndarray:
        """Float32 NCHW batch, the same tensor the trained model saw for these images (decoded in threads)."""
        pre = self.runner.card.preprocess
        items = list(images)

        def prepare(item: ImageLike) -> np.ndarray:
            return eval_array(_as_image(item)[1], pre)

        if all(isinstance(item, (str, Path)) for item in items):
            arrays = list(map_images(prepare, items))
        else:  # a caller's Image objects stay on this thread: PIL loads an image lazily, not thread-safely
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arrays = [prepare(item) for item in items]
        if not arrays:
            return np.zeros((0, *self.runner.input_shape), np.float32)
        return np.stack(arrays)

    def logits(self, images: Sequence[ImageLike]) -> np.ndarray:
        chunks = [self.runner.infer(self.preprocess(images[i:i + self.batch_size]))
                  for i in range(0, len(images), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.runner.card.num_classes), np.float32)

    def predict(self, images: Sequence[ImageLike] | ImageLike, topk: int = 5) -> list[Prediction]:
        if topk < 1:
            raise EdgetlError(f"topk {topk} must be at least 1")
        items: Sequence[ImageLike] = [images] if isinstance(images, (str, Path, Image.Image, np.ndarray)) \
            else list(images)
        probs = softmax(self.logits(items).astype(np.float64))
        classes = self.runner.card.classes
        k = min(topk, len(classes))
        out = []
        for item, p in zip(items, probs, strict=True):
            order = np.argsort(-p)[:k]
            source = str(item) if isinstance(item, (str, Path)) else _as_image(item)[0]
            out.append(Prediction(source, [(classes[i], float(p[i])) for i in order]))
        return out
