"""Image files or arrays → top-k answers, through any runner, with the artifact's own training preprocessing."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetl.calibration import softmax
from edgetl.data.images import BadImage, decode_rgb, map_images, to_rgb
from edgetl.data.transforms import eval_array
from edgetl.errors import EdgetlError
from edgetl.progress import show_progress
from edgetl.runtime.base import Runner

ImageLike = str | Path | Image.Image | np.ndarray


@dataclass
class Prediction:
    source: str
    top: list[tuple[str, float]]  # (class name, probability at the card's temperature), best first

    @property
    def label(self) -> str:
        return self.top[0][0]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "top": [{"class": c, "prob": p} for c, p in self.top]}


def logits_of_files(runners: Sequence[Runner], paths: Sequence[str | Path], batch_size: int = 32,
                    progress: bool = True, label: str = "images",
                    ) -> tuple[list[np.ndarray], list[tuple[str, str]], list[int]]:
    """Logits of every runner over the image files ``paths``: each file decoded once (in threads) and
    preprocessed per runner's card; a file that does not decode is skipped with the reason, not fatal.

    Returns (logits per runner, skipped (path, reason), indices into ``paths`` of the images used).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    pres = [r.card.preprocess for r in runners]
    distinct = [p for i, p in enumerate(pres) if p not in pres[:i]]  # usually one: each image resized once

    def one(path: str | Path) -> list[np.ndarray] | BadImage:
        """The image decoded once and preprocessed for each distinct card; runs on a decoding thread."""
        try:
            img = decode_rgb(path)
        except BadImage as exc:
            return exc
        return [eval_array(img, pre) for pre in distinct]

    outs: list[list[np.ndarray]] = [[] for _ in runners]
    skipped: list[tuple[str, str]] = []
    used: list[int] = []
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=not show_progress(progress)) as bar:
        task = bar.add_task("images", total=len(paths))
        for start in range(0, len(paths), batch_size):
            arrays, idx = [], []
            chunk = range(start, min(start + batch_size, len(paths)))
            for i, result in zip(chunk, map_images(one, [paths[i] for i in chunk]), strict=True):
                if isinstance(result, BadImage):
                    skipped.append((str(paths[i]), str(result)))
                else:
                    arrays.append(result)
                    idx.append(i)
            if arrays:
                for k, runner in enumerate(runners):
                    j = distinct.index(pres[k])
                    outs[k].append(runner.infer(np.stack([a[j] for a in arrays])))
                used += idx
            bar.advance(task, len(chunk))
    logits = [np.concatenate(o) if o else np.zeros((0, r.card.num_classes), np.float32)
              for o, r in zip(outs, runners, strict=True)]
    return logits, skipped, used


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
        """Top-k answers for each image; a file that does not decode is an error naming it."""
        items: Sequence[ImageLike] = [images] if isinstance(images, (str, Path, Image.Image, np.ndarray)) \
            else list(images)
        k = self._k(topk)
        logits = self.logits(items)
        sources = [str(item) if isinstance(item, (str, Path)) else
                   "<image>" if isinstance(item, Image.Image) else "<array>" for item in items]
        return self._answers(sources, logits, k)

    def predict_files(self, paths: Sequence[str | Path], topk: int = 5, progress: bool = False,
                      ) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """Answers for the files that decode and (path, reason) for those that do not; each decoded once."""
        k = self._k(topk)
        (logits,), skipped, used = logits_of_files([self.runner], paths, self.batch_size, progress, "predicting")
        return self._answers([str(paths[i]) for i in used], logits, k), skipped

    def _k(self, topk: int) -> int:
        if topk < 1:
            raise EdgetlError(f"topk {topk} must be at least 1")
        return min(topk, len(self.runner.card.classes))

    def _answers(self, sources: list[str], logits: np.ndarray, k: int) -> list[Prediction]:
        probs = softmax(logits, self.runner.card.temperature)
        classes = self.runner.card.classes
        out = []
        for source, p in zip(sources, probs, strict=True):
            order = np.argsort(-p)[:k]
            out.append(Prediction(source, [(classes[i], float(p[i])) for i in order]))
        return out
