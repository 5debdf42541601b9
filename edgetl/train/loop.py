"""One training epoch and one evaluation pass, torchvision-references style.

Metrics are accumulated as tensors on the device and summed across ranks once per epoch; the only
per-step host sync is the loss value, which is checked for NaN/inf so a diverging run stops at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgetl.data.dataset import batches
from edgetl.errors import EdgetlError
from edgetl.models.freeze import frozen_bn_to_eval
from edgetl.train.optim import set_lr


@dataclass
class StepSettings:
    """How a step runs on this device: mixed precision, memory format, gradient clipping."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    scaler: Any = field(default_factory=lambda: torch.amp.GradScaler("cpu", enabled=False))  # on for float16 autocast
    channels_last: bool = False
    clip_grad: float | None = None
    freeze_bn: bool = False  # every BatchNorm keeps its running statistics (eval mode) while training

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return (images.to(self.device, non_blocking=True, memory_format=fmt),
                target.to(self.device, non_blocking=True))


@dataclass
class EpochStats:
    loss: float
    top1: float
    top5: float | None
    images: int
    seconds: float
    logits: torch.Tensor | None = None  # validate: every image's logits (all ranks), for the temperature fit
    targets: torch.Tensor | None = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


class Meter:
    """Sums of (loss * n, top-1 hits, top-5 hits, n), reduced across ranks at the end."""

    def __init__(self, device: torch.device, num_classes: int) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)
        self.topk = 5 if num_classes > 5 else 0  # with 5 classes or fewer, every top-5 holds the label
        self.start = time.perf_counter()

    def update(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        n = target.shape[0]
        ranked = logits.topk(max(1, self.topk), dim=1).indices
        hits = ranked == target[:, None]
        self.sums += torch.stack([loss.detach().double() * n, hits[:, 0].sum().double(),
                                  hits.any(dim=1).sum().double(), torch.tensor(float(n), device=self.sums.device,
                                                                               dtype=torch.float64)])

    def result(self, reduce: bool = True) -> EpochStats:
        """The epoch's figures; ``reduce``: sum the ranks' shares first (False: the sums are already whole)."""
        if reduce and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.sums)
        loss, top1, top5, n = self.sums.tolist()
        n = max(n, 1.0)
        return EpochStats(loss / n, 100.0 * top1 / n, 100.0 * top5 / n if self.topk else None, int(n),
                          time.perf_counter() - self.start)


def train_one_epoch(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], criterion: nn.Module,
                    optimizer: torch.optim.Optimizer, settings: StepSettings, *, epoch: int, first_step: int,
                    lr_for_step: Callable[[int], float], num_classes: int,
                    on_step: Callable[[float], None] | None = None) -> tuple[EpochStats, int]:
    """Train for one pass over ``loader``; returns the epoch's stats and the next global step."""
    model.train()
    frozen_bn_to_eval(model, all_bn=settings.freeze_bn)
    meter = Meter(settings.device, num_classes)
    step = first_step
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, (images, target) in enumerate(batches(loader)):
        images, target = settings.to_device(images, target)
        set_lr(optimizer, lr_for_step(step))
        with settings.autocast():
            logits = model(images)
            loss = criterion(logits, target)
        value = loss.item()
        if not math.isfinite(value):
            raise EdgetlError(f"loss became {value} at epoch {epoch + 1}, step {i + 1}; lower --lr "
                              f"(now {lr_for_step(step):.3g}), keep --clip-grad on, or try --amp none")
        optimizer.zero_grad(set_to_none=True)
        scaler = settings.scaler  # scales the loss for float16 autocast; disabled, each call passes through
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        if settings.clip_grad:
            torch.nn.utils.clip_grad_norm_(params, settings.clip_grad)
        scaler.step(optimizer)  # skipped when float16 gradients overflowed
        scaler.update()
        meter.update(loss, logits.detach().float(), target)
        step += 1
        if on_step is not None:
            on_step(value)
    return meter.result(), step


@torch.inference_mode()
def validate(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], criterion: nn.Module,
             settings: StepSettings, num_classes: int, images: int | None = None) -> EpochStats:
    """Loss and top-1 / top-5 in eval mode over the ``images`` validation images, each once, and the logits behind
    them (on the CPU, in the dataset's order).

    Under DDP each rank scores its share and the logits are gathered: DistributedSampler repeats a few images so
    every rank has as many, and those are dropped here, so the figures are the whole set's, as ``edgetl eval``'s.
    """
    model.eval()
    meter = Meter(torch.device("cpu"), num_classes)
    outputs, targets = [], []
    for batch, target in batches(loader):
        batch, target = settings.to_device(batch, target)
        with settings.autocast():
            outputs.append(model(batch).float())
        targets.append(target)
    if outputs:  # every rank or none: DistributedSampler gives each as many images
        logits, target = _gathered(torch.cat(outputs), images), _gathered(torch.cat(targets), images)
        meter.update(criterion(logits, target), logits, target)
    stats = meter.result(reduce=False)
    if outputs:
        stats.logits, stats.targets = logits, target
    return stats


def _gathered(local: torch.Tensor, images: int | None) -> torch.Tensor:
    """Every rank's ``local`` on the CPU, in the dataset's order, the first ``images`` kept.

    DistributedSampler (no shuffle) gives rank r the images r, r + world, r + 2 world, … of the dataset, padded
    with its first images to an equal share: interleaving the ranks' rows restores the order, the padding last.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts = [torch.empty_like(local) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(parts, local)
        local = torch.stack(parts, dim=1).flatten(0, 1)
    return local[:images].cpu()
