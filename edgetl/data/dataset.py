"""Torch datasets and loaders over scanned samples, shuffled from (seed, epoch) so resume is exact."""

from __future__ import annotations

import random
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from edgetl.data.folder import Sample
from edgetl.data.images import BadImage, load_rgb
from edgetl.errors import EdgetlError


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """(image tensor, label) pairs; images were checked at scan time."""

    def __init__(self, samples: Sequence[Sample], transform: Callable[[Any], torch.Tensor]) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        try:
            img = load_rgb(sample.path)
        except BadImage as exc:  # changed on disk since the scan
            raise EdgetlError(f"{sample.path}: {exc}; it was readable when the run "
                              "started — restore or remove it") from None
        return self.transform(img), sample.label


def class_counts(samples: Sequence[Sample], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for s in samples:
        counts[s.label] += 1
    return counts


class EpochSampler(Sampler[int]):
    """Random (or class-balanced, with replacement) order drawn from ``seed`` and the epoch.

    With ``world_size`` > 1 each rank takes every ``world_size``-th index of the same order.
    """

    def __init__(self, num_samples: int, seed: int, weights: Sequence[float] | None = None,
                 rank: int = 0, world_size: int = 1) -> None:
        self.num_samples, self.seed, self.rank, self.world_size = num_samples, seed, rank, world_size
        self.weights = torch.as_tensor(weights, dtype=torch.double) if weights is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g)
        else:
            order = torch.randperm(self.num_samples, generator=g)
        idx = order.tolist()
        idx += idx[: len(self) * self.world_size - len(idx)]  # pad so every rank gets as many
        return iter(idx[self.rank :: self.world_size])


def balanced_weights(samples: Sequence[Sample], num_classes: int) -> list[float]:
    """Per-sample weights so each class is drawn equally often."""
    counts = class_counts(samples, num_classes)
    return [1.0 / counts[s.label] for s in samples]


def _init_worker(worker_id: int) -> None:
    """Seed the worker, and leave Ctrl-C to the main process: it saves the run and stops the workers.

    A terminal's Ctrl-C reaches every process of the group; a worker that died of it first would turn a
    clean "interrupted, resume with …" into "DataLoader worker exited unexpectedly".
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.excepthook = _quiet_abandoned_handoff
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _quiet_abandoned_handoff(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """A worker's ``sys.excepthook``: a batch handoff the main process walked away from is no error.

    A worker hands each batch's shared memory to the main process as a file descriptor over a socket;
    the sender is multiprocessing's resource-sharer thread, which reports any failure through
    ``sys.excepthook``. When Ctrl-C stops the main process mid-handoff, that is a ConnectionResetError,
    BrokenPipeError or EOFError traceback after the resume line. A handoff that fails while the main
    process still waits for it fails there too, so nothing is hidden; other exceptions are printed.
    """
    if not issubclass(kind, (ConnectionError, EOFError)):
        sys.__excepthook__(kind, value, tb)


def batches(loader: Iterable[Any]) -> Iterator[Any]:
    """``iter(loader)``, with Ctrl-C held back while its worker processes start.

    Workers forked with SIGINT blocked never see the terminal's Ctrl-C (which reaches the whole process
    group), not even before :func:`_init_worker` runs. The main process takes its Ctrl-C once the
    iterator is complete (:func:`_sigint_held`).
    """
    if not getattr(loader, "num_workers", 0) or not hasattr(signal, "pthread_sigmask"):
        return iter(loader)
    with _sigint_held():
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return iter(loader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Run SIGINT's Python handler only after the block (main thread; where the handler is Python's).

    Blocking SIGINT in this thread is not enough: another thread (an OpenMP worker) takes the signal and
    Python still runs the handler here. A KeyboardInterrupt halfway through ``iter(loader)`` then leaves
    a half-built iterator whose started workers nobody stops, or is raised inside the at-fork callback
    of ``logging`` (``_releaseLock``), where Python only prints "Exception ignored" and the Ctrl-C is lost.
    """
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(handler):
        yield
        return
    frames: list[FrameType | None] = []
    signal.signal(signal.SIGINT, lambda signum, frame: frames.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
    if frames:
        handler(signal.SIGINT, frames[0])


def make_loader(dataset: ImageDataset, batch_size: int, *, train: bool, seed: int = 0, balanced: bool = False,
                workers: int = 0, distributed: bool = False, pin_memory: bool = False) -> DataLoader[Any]:
    """A DataLoader whose order depends only on (seed, epoch): call :func:`set_epoch` every epoch."""
    rank, world = 0, 1
    if distributed:
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    sampler: Sampler[int] | None = None
    if train and balanced:
        num_classes = max(s.label for s in dataset.samples) + 1
        sampler = EpochSampler(len(dataset), seed, balanced_weights(dataset.samples, num_classes), rank, world)
    elif distributed:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=train, seed=seed)
    elif train:
        sampler = EpochSampler(len(dataset), seed)
    per_rank = len(sampler) if isinstance(sampler, Sized) else len(dataset)
    # Keep every image: drop only a last batch of one, which BatchNorm cannot train on (small data sets
    # would otherwise lose up to a batch per epoch: 52 of hymenoptera's 244 at batch 64).
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                        drop_last=train and per_rank % batch_size == 1, pin_memory=pin_memory,
                        worker_init_fn=_init_worker, generator=torch.Generator().manual_seed(seed))
    loader.edgetl_seed = seed  # type: ignore[attr-defined]
    return loader


def set_epoch(loader: DataLoader[Any], epoch: int) -> None:
    """Reseed the loader's order (and worker seeds) for ``epoch``."""
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if loader.generator is not None:  # worker seeds are drawn from it: make them depend on the epoch only
        loader.generator.manual_seed(getattr(loader, "edgetl_seed", 0) * 100_003 + epoch)
