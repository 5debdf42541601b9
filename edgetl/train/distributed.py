"""DDP set-up from torchrun's environment: gloo on CPU, nccl on CUDA; rank 0 writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgetl.errors import EdgetlError


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun): who speaks for the run."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast_path(self, path: Path) -> Path:
        """Rank 0's choice of ``path`` (e.g. a timestamped run dir) on every rank."""
        if self.world == 1:
            return path
        box = [str(path)]
        torch.distributed.broadcast_object_list(box, src=0)
        return Path(box[0])

    def barrier(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def resolve_train_device(device: str | None, local_rank: int = 0) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EdgetlError(f"--device {device}: no CUDA GPU visible to PyTorch; use --device cpu")
        return torch.device("cuda", local_rank) if device == "cuda" else torch.device(device)
    if device != "cpu":
        raise EdgetlError(f"--device {device!r}: choose cpu or cuda")
    return torch.device("cpu")


def init_distributed(device: str | None) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = launched_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_train_device(device, local_rank)
    if world > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def wrap_ddp(model: nn.Module, dist: DistInfo) -> nn.Module:
    """DDP over the currently trainable parameters (re-wrapped when gradual unfreezing changes them)."""
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
