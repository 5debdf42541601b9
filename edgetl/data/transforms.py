"""Preprocessing built from the model card.

``eval_array`` is the single implementation of eval-time preprocessing: the training loop's validation
data, the exporter's calibration batches and the runtime Predictor all call it, so a deployed artifact
sees exactly the tensor the trained model saw. It needs only PIL and numpy (no torch at deploy time) and
matches timm's eval transform in each of its crop modes (resize to size / crop_pct, crop to size, normalise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from edgetl.card import Preprocess
from edgetl.config import AUGMENTS
from edgetl.errors import EdgetlError

if TYPE_CHECKING:
    import torch

PIL_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def _resize_keep_ratio(img: Image.Image, short: int, resample: Image.Resampling) -> Image.Image:
    """The shorter side to ``short`` pixels, as torchvision's ``Resize(int)``."""
    w, h = img.size
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_w, new_h = int(short * w / h), short
    return img.resize((new_w, new_h), resample)


def _resize_longer(img: Image.Image, out_h: int, out_w: int, resample: Image.Resampling) -> Image.Image:
    """The whole image inside out_h x out_w, aspect kept (timm's ``ResizeKeepRatio(longest=1)``)."""
    w, h = img.size
    ratio = max(h / out_h, w / out_w)
    return img.resize((round(w / ratio), round(h / ratio)), resample)


def _center_crop_or_pad(img: Image.Image, out_h: int, out_w: int, fill: tuple[int, ...]) -> Image.Image:
    """The centre out_h x out_w of the image; a side shorter than that is padded with ``fill`` (timm's rounding)."""
    w, h = img.size
    if out_w > w or out_h > h:
        padded = Image.new(img.mode, (max(w, out_w), max(h, out_h)), fill)
        padded.paste(img, (max(out_w - w, 0) // 2, max(out_h - h, 0) // 2))
        img, (w, h) = padded, padded.size
    top = int(round((h - out_h) / 2.0))
    left = int(round((w - out_w) / 2.0))
    return img.crop((left, top, left + out_w, top + out_h))


def _resize_and_crop(img: Image.Image, pre: Preprocess) -> Image.Image:
    """timm's eval geometry: scale to size / crop_pct the way ``crop_mode`` says, then take the centre."""
    out_h, out_w = pre.size
    resample = PIL_INTERPOLATION[pre.interpolation]
    scale_h, scale_w = math.floor(out_h / pre.crop_pct), math.floor(out_w / pre.crop_pct)
    if pre.crop_mode == "squash":
        resized = img.resize((scale_w, scale_h), resample)
    elif pre.crop_mode == "border":
        resized = _resize_longer(img, scale_h, scale_w, resample)
    else:
        resized = _resize_keep_ratio(img, max(scale_h, scale_w), resample)
    fill = tuple(round(255 * m) for m in pre.mean) if pre.crop_mode == "border" else (0, 0, 0)  # as timm pads
    return _center_crop_or_pad(resized, out_h, out_w, fill)


def eval_array(img: Image.Image, pre: Preprocess) -> np.ndarray:
    """One RGB PIL image → float32 CHW array, normalised, at the model's input size."""
    pixels = np.asarray(_resize_and_crop(img, pre), dtype=np.float32) / np.float32(255.0)
    normed = (pixels - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(normed.transpose(2, 0, 1), dtype=np.float32)


def eval_transform(pre: Preprocess) -> Callable[[Image.Image], torch.Tensor]:
    """Eval preprocessing as a callable returning a torch tensor (for Datasets)."""
    import torch

    def transform(img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(eval_array(img, pre))

    return transform


def train_transform(pre: Preprocess, augment: str = "none") -> Callable[[Image.Image], Any]:
    """Random resized crop + horizontal flip (+ RandAugment / TrivialAugment), then normalise."""
    from torchvision import transforms as T

    if augment not in AUGMENTS:
        raise EdgetlError(f"unknown --augment {augment!r}; choose one of {', '.join(AUGMENTS)}")
    interp = T.InterpolationMode(pre.interpolation)
    steps: list[Any] = [T.RandomResizedCrop(pre.size, interpolation=interp), T.RandomHorizontalFlip()]
    if augment == "randaugment":
        steps.append(T.RandAugment(interpolation=interp))
    elif augment == "trivialaugment":
        steps.append(T.TrivialAugmentWide(interpolation=interp))
    steps += [T.ToTensor(), T.Normalize(pre.mean, pre.std)]
    return T.Compose(steps)
