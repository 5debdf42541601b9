"""Checkpoints as safetensors + a JSON model card: loading never unpickles code.

A run directory holds ``model.json`` (the card), ``best.safetensors`` and ``last.safetensors``. Training
writes them, and export, the runtime and ``--weights`` read them: the format every stage shares.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.card import ModelCard
from edgetl.errors import EdgetlError
from edgetl.io import atomic_path

if TYPE_CHECKING:
    import torch
    from torch import nn

CARD_FILE = "model.json"
BEST_WEIGHTS = "best.safetensors"  # the best epoch's weights: what export, eval and parity use
LAST_WEIGHTS = "last.safetensors"  # the latest epoch's weights: what --resume continues from
STATE_TENSORS = "train_state.safetensors"  # the optimizer state beside the weights (edgetl.train.state)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> None:
    """Atomically write ``tensors`` (made contiguous, on CPU) as safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        with atomic_path(path) as tmp:
            save_file(flat, str(tmp), metadata=meta)
    except SafetensorError as exc:  # a full disk, say: the library's own error type, not an OSError
        raise EdgetlError(f"{path}: cannot write it ({exc}); free disk space or choose another --out") from None


def load_tensors(path: str | Path, fix: str = "restore the file or train again") -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or corrupt file is a one-line error ending with ``fix``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise EdgetlError(f"{p}: checkpoint not found; pass a run directory with "
                          "best.safetensors or a .safetensors file")
    if not os.access(p, os.R_OK):
        raise EdgetlError(f"{p}: permission denied; make the checkpoint readable (chmod u+r)")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EdgetlError(f"{p}: not a readable safetensors checkpoint ({exc}); {fix}") from None


def save_checkpoint(run_dir: str | Path, name: str, model: nn.Module, card: ModelCard,
                    meta: dict[str, str] | None = None) -> Path:
    """Write ``<run_dir>/<name>.safetensors`` and the card beside it."""
    from edgetl.models.factory import unwrap

    run = Path(run_dir)
    path = run / f"{name}.safetensors"
    save_tensors(path, unwrap(model).state_dict(), meta={"arch": card.arch, **(meta or {})})
    card.save(run / CARD_FILE)
    return path


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(weights file, card file) for a run directory or a ``.safetensors`` file inside one."""
    p = Path(path)
    if p.is_dir():
        weights = p / BEST_WEIGHTS
        if not weights.exists() and (p / LAST_WEIGHTS).exists():  # never scored as if it were the best
            raise EdgetlError(f"{p}: no best.safetensors (the run stopped before an epoch finished, or it was "
                              f"removed); resume with `edgetl train --resume {p}`, or pass {p / 'last.safetensors'} "
                              "to use the latest weights")
        card = p / CARD_FILE
    else:
        weights, card = p, p.parent / CARD_FILE
    if weights.name == STATE_TENSORS:
        raise EdgetlError(f"{p}: the optimiser state `edgetl train --resume` reads, not model weights; pass the run "
                          "directory or its best.safetensors")
    if not weights.exists():
        raise EdgetlError(f"{p}: no checkpoint (best.safetensors / last.safetensors); train one with `edgetl train`")
    if not card.exists():
        raise EdgetlError(f"{card}: model card missing beside {weights.name}; copy model.json from the run directory")
    return weights, card


def _readable(path: Path) -> bool:
    """Whether ``path`` is a safetensors file whose header reads: worth suggesting in place of a damaged one."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return len(list(fh.keys())) > 0
    except (SafetensorError, OSError, ValueError):
        return False


def load_model(path: str | Path, card: ModelCard | None = None) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model from its card and load the weights (eval mode, CPU)."""
    from edgetl.models.factory import create_model

    weights, card_file = resolve_checkpoint(path)
    card = card or ModelCard.load(card_file)
    model = create_model(card)
    other = weights.with_name(LAST_WEIGHTS)
    fix = f"pass {other} instead, or train again" if weights.name == BEST_WEIGHTS and _readable(other) \
        else "restore the file or train again"
    load_state(model, load_tensors(weights, fix), source=weights, arch=card.arch)
    return model.eval(), card


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path, arch: str) -> None:
    """``load_state_dict`` strictly, with a one-line error naming what does not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label} {len(keys)} (e.g. {keys[0]})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys
        )
        raise EdgetlError(f"{source}: weights do not fit {arch} with this head ({detail}); "
                          "check --model / model.json matches the checkpoint")
    model.load_state_dict(state, strict=True)
