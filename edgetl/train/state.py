"""The resumable state of a training run: weights, optimizer moments and counters, committed together.

``--resume`` reads it back; ``--init`` starts a new run from another run's weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.card import ModelCard
from edgetl.checkpoint import (
    BEST_WEIGHTS,
    CARD_FILE,
    LAST_WEIGHTS,
    STATE_TENSORS,
    load_state,
    load_tensors,
    resolve_checkpoint,
    save_checkpoint,
    save_tensors,
)
from edgetl.errors import EdgetlError, class_difference

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgetl.config import TrainConfig

STATE_JSON = "train_state.json"


PENDING = ".next"  # last.next.safetensors, train_state.next.safetensors: written, not yet committed
EPOCH_KEY = "epochs_done"  # in each file's safetensors metadata, to check the three files belong together

RUN_FILES = ("config.yaml", CARD_FILE, LAST_WEIGHTS, STATE_JSON, STATE_TENSORS)
# Every file training writes atomically (their temp files are training's to clean up).
TRAIN_WRITES = (*RUN_FILES, BEST_WEIGHTS, "metrics.csv", "curves.png")
STATE_KEYS = ("param_groups", "scalars", "epochs_done", "step", "best_value", "best_epoch", "bad_epochs", "history")
CANNOT_RESUME = "this run cannot be resumed; start a new one with --out (--init RUN_DIR starts from its best weights)"


def save_run_state(run_dir: str | Path, model: nn.Module, card: ModelCard, optimizer: torch.optim.Optimizer,
                   meta: dict[str, Any]) -> None:
    """Weights, optimizer state and counters as one commit, so a kill at any instant leaves a resumable run.

    The weights and the optimizer tensors are written as ``*.next.safetensors``; writing ``train_state.json``
    commits them; then they are renamed into place. A kill before the JSON leaves the previous save in
    force; a kill after it is finished by :func:`finish_interrupted_save`. ``meta`` holds epoch, global step,
    best metric, early-stopping counter and history; the optimizer is stored without pickle (tensors as
    safetensors, the rest as JSON).
    """
    from edgetl.io import atomic_write_json

    run, epoch = Path(run_dir), {EPOCH_KEY: str(meta[EPOCH_KEY])}
    save_checkpoint(run, "last" + PENDING, model, card, meta=epoch)
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if hasattr(value, "shape"):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    save_tensors(_pending(run / STATE_TENSORS), tensors, meta=epoch)
    atomic_write_json(run / STATE_JSON, {"param_groups": state["param_groups"], "scalars": scalars, **meta})
    _settle_pending(run)


def _pending(final: Path) -> Path:
    return final.with_name(final.stem + PENDING + final.suffix)


def _saved_epoch(path: Path) -> str | None:
    """The epoch count a safetensors file was saved at (None for files of older edgetl versions)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get(EPOCH_KEY)
    except Exception:  # unreadable: load_tensors says so with the fix
        return None


def finish_interrupted_save(run_dir: str | Path) -> None:
    """Complete or drop a save a kill cut short; remove temporary files an interrupted write left behind.

    Pending files of the committed epoch (``train_state.json``'s) are renamed into place; older ones,
    never committed, are deleted, as are the temporary files of training's own writes (not other commands':
    an ``edgetl eval`` may be writing beside it). Call it holding the run's lock, on one process only.
    """
    run = Path(run_dir)
    for name in (*TRAIN_WRITES, f"last{PENDING}.safetensors", _pending(run / STATE_TENSORS).name):
        for tmp in run.glob(f".{name}.*.tmp"):  # an atomic write killed before its rename
            tmp.unlink(missing_ok=True)
    _settle_pending(run)


def _settle_pending(run: Path) -> None:
    """Rename the committed epoch's pending files into place; delete uncommitted ones."""
    from edgetl.io import read_json

    meta = read_json(run / STATE_JSON) if (run / STATE_JSON).is_file() else None
    committed = str(meta.get(EPOCH_KEY)) if isinstance(meta, dict) else None
    for final in (run / LAST_WEIGHTS, run / STATE_TENSORS):
        pending = _pending(final)
        if pending.is_file():
            if committed is not None and _saved_epoch(pending) == committed:
                os.replace(pending, final)
            else:
                pending.unlink()


def check_saved_together(run_dir: Path, epochs_done: int) -> None:
    """A one-line error when the weights or optimizer file is from another save than ``train_state.json``."""
    for final in (run_dir / LAST_WEIGHTS, run_dir / STATE_TENSORS):
        epoch = _saved_epoch(final)
        if epoch is not None and epoch != str(epochs_done):
            raise EdgetlError(f"{final}: saved after epoch {epoch}, but {STATE_JSON} after epoch {epochs_done} "
                              f"(files of different saves); {CANNOT_RESUME}")


def require_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` if it holds everything ``--resume`` reads; otherwise a one-line error naming what is missing."""
    run = Path(run_dir)
    if not run.is_dir():
        raise EdgetlError(f"--resume {run}: no such directory; pass a run directory written by `edgetl train`")
    missing = [name for name in RUN_FILES if not (run / name).is_file() and not _pending(run / name).is_file()]
    if missing:
        raise EdgetlError(f"--resume {run}: not a resumable run directory (missing {', '.join(missing)}); pass a "
                          "directory written by `edgetl train`")
    return run


def config_for_run(given: dict[str, Any], config_file: str | Path | None = None,
                   resume: str | Path | None = None) -> tuple[TrainConfig, list[str]]:
    """The run's config from flags ``given`` (None values: not given) over ``config_file`` over the recipe, and
    the notes to print. With ``resume``, the saved run's config is the base, and a flag that would change what
    epochs 1..N learned is an error (``check_resume``)."""
    from edgetl.config import check_given, check_resume, read_yaml_config, resolve_config

    given = {k: v for k, v in given.items() if v is not None}
    base = None
    if resume:  # its relative paths (as typed where it started) found from here through split.json
        from edgetl.data.trained_on import locate_paths

        base = locate_paths(require_run_dir(resume), read_yaml_config(require_run_dir(resume) / "config.yaml"))
    cfg = resolve_config(given, config_file=config_file, base=base)
    check_given(cfg, given)
    if resume is None or base is None:
        return cfg, []
    explicit = [*given, *(read_yaml_config(config_file) if config_file else {})]
    return cfg, check_resume(resume, resolve_config(base=base), cfg, explicit)


def load_train_state(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(optimizer state_dict, meta) written by :func:`save_run_state`."""
    from edgetl.io import read_json

    run = Path(run_dir)
    if not (run / STATE_JSON).is_file():
        raise EdgetlError(f"{run}: no {STATE_JSON}; --resume needs a run directory written by `edgetl train`")
    meta = read_json(run / STATE_JSON)
    lost = [key for key in STATE_KEYS if key not in meta] if isinstance(meta, dict) else list(STATE_KEYS)
    if lost:
        raise EdgetlError(f"{run / STATE_JSON}: not a training state (no {', '.join(lost)}); {CANNOT_RESUME}")
    check_saved_together(run, int(meta[EPOCH_KEY]))
    tensors = load_tensors(run / STATE_TENSORS, CANNOT_RESUME)
    per_param: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = value
    for index, values in meta.pop("scalars").items():
        per_param.setdefault(int(index), {}).update(values)
    return {"state": per_param, "param_groups": meta.pop("param_groups")}, meta


def load_init(model: nn.Module, card: ModelCard, source: str | Path) -> str:
    """Load an earlier run's full weights, head included, into ``model`` (``--init``).

    LP-FT: the fine-tune starts where the linear probe ended, so the pretrained features are not
    disturbed by gradients through a random head. Architecture, classes and the head's layers must match;
    dropout has no weights, so the fine-tune may change it.
    """
    weights, card_file = resolve_checkpoint(source)
    old = ModelCard.load(card_file)
    if (old.arch, old.classes, old.head.hidden) != (card.arch, card.classes, card.head.hidden):
        differ = class_difference(old.classes, card.classes, "the --init run", "this data")
        classes = "" if old.classes == card.classes else f" (classes: {differ})"
        raise EdgetlError(f"--init {source}: it is {old.arch} on {len(old.classes)} classes with --head-hidden "
                          f"{old.head.hidden}; this run is {card.arch} on "
                          f"{len(card.classes)} classes with --head-hidden "
                          f"{card.head.hidden}{classes}; use the same --model, --data and --head-hidden")
    load_state(model, load_tensors(weights), source=weights, arch=card.arch)
    return f"--init {source}: started from {weights} (head included)"
