"""``fit(config)``: data → model → epochs of train/validate → a run directory.

Every epoch starts from a state that depends only on (seed, epoch) and what is on disk: RNGs are
reseeded, the loader reshuffled, the learning rate computed from the global step. ``last`` and the
optimizer state are written after every epoch (and once before the first), so ``--resume`` after a
crash or Ctrl-C gives the same weights as a run that was never interrupted.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from edgetl import checkpoint, interrupt
from edgetl.card import REFIT_KEY, HeadConfig, ModelCard, library_versions
from edgetl.checkpoint import BEST_WEIGHTS, LAST_WEIGHTS
from edgetl.config import TrainConfig, config_warnings, save_config
from edgetl.data.dataset import ImageDataset, class_counts, make_loader, set_epoch
from edgetl.data.folder import report_skipped
from edgetl.data.overlap import overlap_warnings
from edgetl.data.splits import DataSplit, scan_data, split_warnings
from edgetl.data.trained_on import SPLIT_FILE, inherited_overlap, record_split
from edgetl.data.transforms import eval_transform, train_transform
from edgetl.errors import INTERRUPTED_BEFORE_START, EdgetlError, Interrupted, class_difference, warn
from edgetl.io import dir_lock, ensure_writable_dir
from edgetl.models.factory import card_for, create_model
from edgetl.models.freeze import apply_freeze, stage_param_names, trainable_stages
from edgetl.models.weights import load_weights, zero_init_head
from edgetl.progress import show_progress
from edgetl.train import state as run_state
from edgetl.train.distributed import DistInfo, init_distributed, wrap_ddp
from edgetl.train.loop import EpochStats, StepSettings, train_one_epoch, validate
from edgetl.train.loss import build_loss
from edgetl.train.optim import build_optimizer, lr_at
from edgetl.train.outputs import epoch_line, plot_curves, print_summary, write_metrics_csv


@dataclass
class RunResult:
    """What a finished ``fit`` hands back: the run directory, its card and per-epoch history."""

    run_dir: Path
    card: ModelCard
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    test: dict[str, Any] = field(default_factory=dict)  # best.safetensors on the test set (Trainer.score_test)

    @property
    def best(self) -> dict[str, Any]:
        return next((row for row in self.history if row["epoch"] == self.best_epoch), {})


def reseed(seed: int, epoch: int) -> None:
    """Python, NumPy and torch RNGs from (seed, epoch): dropout and augmentation replay on resume."""
    value = (seed * 1_000_003 + epoch) % 2**31
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def default_run_dir(model: str) -> Path:
    return Path("runs") / f"{model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _improved(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value > best if monitor == "val_top1" else value < best


def _settings(cfg: TrainConfig, dist: DistInfo) -> StepSettings:
    cuda = dist.device.type == "cuda"
    amp = cfg.amp
    if not cuda and amp in ("bf16", "fp16"):
        raise EdgetlError(f"--amp {amp} needs a CUDA device; use --amp none (or auto) on CPU")
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "none"
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    scaler = torch.amp.GradScaler(dist.device.type, enabled=dtype == torch.float16)
    return StepSettings(dist.device, dtype, scaler, channels_last=cfg.channels_last and cuda, clip_grad=cfg.clip_grad,
                        freeze_bn=cfg.freeze_bn)


class Trainer:
    """State of one run; :func:`fit` is the whole story, the methods are its paragraphs."""

    def __init__(self, cfg: TrainConfig, console: Console, quiet: bool) -> None:
        self.cfg, self.console, self.quiet = cfg, console, quiet
        self.dist = init_distributed(cfg.device)
        self.split: DataSplit = scan_data(cfg.data or "", cfg.val_split, cfg.seed)
        self.run_dir = Path(cfg.resume) if cfg.resume else Path(cfg.out) if cfg.out else default_run_dir(cfg.model)
        self.run_dir = self.dist.broadcast_path(self.run_dir)
        self.num_classes = len(self.split.classes)
        self.card = self._card()
        torch.manual_seed(cfg.seed)
        self.settings = _settings(cfg, self.dist)
        self.model = self._model()  # before the warnings: a bad --init or --weights fails first
        if self.dist.is_main and not cfg.resume:  # said when the run started; on stderr, --quiet or not
            held = {"val": [s.path for s in self.split.val], "test": [s.path for s in self.split.test]}
            for warning in [*config_warnings(cfg), *split_warnings(self.split), *overlap_warnings(self.split),
                            *inherited_overlap([cfg.init, cfg.weights], held)]:
                warn(warning)
        self.num_stages = len(stage_param_names(self.model))
        trainable_stages(cfg.strategy, self.num_stages, 0, cfg.unfreeze, cfg.unfreeze_every)  # bad --unfreeze: now
        counts = class_counts(self.split.train, self.num_classes)
        self.criterion = build_loss(cfg.loss, label_smoothing=cfg.label_smoothing, focal_gamma=cfg.focal_gamma,
                                    focal_alpha=cfg.focal_alpha, class_counts=counts).to(self.dist.device)
        self.val_criterion = nn.CrossEntropyLoss()
        self.train_loader, self.val_loader = self._loaders()
        self.steps_per_epoch = len(self.train_loader)
        # What changes as the run goes: counters, the best epoch so far, and the optimizer, which set_stages
        # builds (and rebuilds, moments kept, whenever gradual unfreezing thaws another stage).
        self.history: list[dict[str, Any]] = []
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.step = 0
        self.start_epoch = 0
        self.stages_now = -1
        self.trainable = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.ddp_model: nn.Module = self.model
        self.resumable = False  # True once the run directory holds this run's state and config.yaml

    def _model(self) -> nn.Module:
        """The model with its starting weights: another run's (--init), a file or package (--weights) or timm's
        hub (--pretrained), on the device. On --resume the saved weights replace these later (``restore``),
        so nothing is downloaded or loaded for them."""
        cfg = self.cfg
        model: nn.Module = create_model(self.card, pretrained=cfg.pretrained and not cfg.resume)
        if cfg.init and not cfg.resume:
            self.log(run_state.load_init(model, self.card, cfg.init))
        else:
            if cfg.weights and not cfg.resume:
                self.log(load_weights(model, cfg.model, cfg.weights, cfg.allow_partial_weights).summary())
            zero_init_head(model)
        model.to(self.dist.device)
        if self.settings.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def _loaders(self) -> tuple[DataLoader[Any], DataLoader[Any]]:
        """Training batches (augmented, shuffled or class-balanced) and validation batches (eval preprocessing)."""
        cfg, pre, distributed = self.cfg, self.card.preprocess, self.dist.world > 1
        train = make_loader(ImageDataset(self.split.train, train_transform(pre, cfg.augment)), cfg.batch_size,
                            train=True, seed=cfg.seed, balanced=cfg.sampler == "balanced", workers=cfg.workers,
                            distributed=distributed, pin_memory=self.dist.device.type == "cuda")
        val = make_loader(ImageDataset(self.split.val, eval_transform(pre)), cfg.batch_size, train=False,
                          seed=cfg.seed, workers=cfg.workers, distributed=distributed)
        return train, val

    def headline(self) -> str:
        split, cfg, dist = self.split, self.cfg, self.dist
        test = f" / {len(split.test)} test" if split.test else ""
        return (f"{cfg.model}: {len(split.train)} train / {len(split.val)} val{test} images, {self.num_classes} "
                f"classes, strategy {cfg.strategy}, device {dist.device}, world {dist.world} → {self.run_dir}")

    def log(self, message: str) -> None:
        if self.dist.is_main and not self.quiet:
            self.console.print(message, highlight=False)

    def _card(self) -> ModelCard:
        cfg = self.cfg
        card = card_for(cfg.model, self.split.classes, cfg.img_size, HeadConfig(cfg.head_dropout, cfg.head_hidden),
                        weights=cfg.weights or (f"timm:{cfg.model}" if cfg.pretrained else None)
                        or (f"run:{cfg.init}" if cfg.init else None))
        card.strategy, card.seed, card.versions = cfg.strategy, cfg.seed, library_versions()
        if cfg.resume:
            old = ModelCard.load(self.run_dir / checkpoint.CARD_FILE)
            if old.arch != card.arch:
                raise EdgetlError(f"--resume {self.run_dir}: it was trained as {old.arch}, not {card.arch}; resume "
                                  "with the same --model")
            if old.classes != card.classes:
                differ = class_difference(old.classes, card.classes, "the run", "the data now")
                raise EdgetlError(f"--resume {self.run_dir}: its {len(old.classes)} classes are not this data's "
                                  f"{len(card.classes)} ({differ}); resume with the same --data")
        return card

    def lr_for_step(self, step: int) -> float:
        total = self.cfg.epochs * self.steps_per_epoch
        return lr_at(step, self.cfg.base_lr, total, round(self.cfg.warmup_epochs * self.steps_per_epoch))

    def set_stages(self, epoch: int) -> None:
        """Freeze for ``epoch``'s strategy; rebuild the optimizer (moments kept) when it changes."""
        n = trainable_stages(self.cfg.strategy, self.num_stages, epoch, self.cfg.unfreeze, self.cfg.unfreeze_every)
        if n == self.stages_now:
            return
        self.trainable = apply_freeze(self.model, n)
        self.optimizer = build_optimizer(self.model, self.cfg.base_lr, self.cfg.weight_decay, self.cfg.backbone_lr_mult,
                                         previous=self.optimizer)
        self.ddp_model = wrap_ddp(self.model, self.dist)
        if self.stages_now >= 0:
            self.log(f"unfreezing: {n}/{self.num_stages} backbone stages now train ({self.trainable:,} parameters)")
        self.stages_now = n

    def save_state(self, epochs_done: int) -> None:
        if not self.dist.is_main:
            return
        assert self.optimizer is not None
        run_state.save_run_state(self.run_dir, self.model, self.card, self.optimizer, {
            "epochs_done": epochs_done, "step": self.step, "best_value": self.best_value,
            "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "history": self.history})

    def restore(self) -> None:
        """Weights, optimizer moments and counters from ``--resume RUN_DIR``."""
        state, meta = run_state.load_train_state(self.run_dir)
        self.start_epoch = int(meta["epochs_done"])
        self.set_stages(max(0, self.start_epoch - 1))
        last = self.run_dir / LAST_WEIGHTS
        weights = checkpoint.load_tensors(last, run_state.CANNOT_RESUME)
        checkpoint.load_state(self.model, weights, source=last, arch=self.card.arch)
        assert self.optimizer is not None
        try:
            self.optimizer.load_state_dict(state)
        except (ValueError, KeyError):  # other trainable parameters than when the state was saved
            raise EdgetlError(f"--resume {self.run_dir}: its optimizer state does not fit the parameters that train "
                              "now; resume without changing --strategy / --unfreeze, or start a new run with "
                              f"--init {self.run_dir}") from None
        self.step, self.history = int(meta["step"]), list(meta["history"])
        self.best_value, self.best_epoch, self.bad_epochs = meta["best_value"], meta["best_epoch"], meta["bad_epochs"]
        best = [row for row in self.history if row["epoch"] == self.best_epoch]
        if best:  # the card is rebuilt on resume: keep what best.safetensors scored, and its temperature
            self.card.metrics = _best_metrics(best[0])
            self.card.temperature = best[0].get("temperature", 1.0)
        refit = ModelCard.load(self.run_dir / checkpoint.CARD_FILE)
        if REFIT_KEY in refit.extra:  # edgetl calibrate's T holds until a better epoch replaces best.safetensors
            self.card.temperature, self.card.extra[REFIT_KEY] = refit.temperature, refit.extra[REFIT_KEY]
        if self.cfg.patience is not None and self.bad_epochs >= self.cfg.patience:
            self.log(f"{self.run_dir} stopped early after epoch {self.start_epoch} ({self.cfg.monitor} did not "
                     f"improve for {self.cfg.patience} epochs); pass a larger --patience to train on")
            self.start_epoch = self.cfg.epochs  # nothing left to run
        elif self.start_epoch >= self.cfg.epochs:
            self.log(f"{self.run_dir} is already complete ({self.start_epoch}/{self.cfg.epochs} epochs); "
                     "pass --epochs N to train longer")
        else:
            self.log(f"resuming {self.run_dir} after epoch {self.start_epoch} (step {self.step})")
            if REFIT_KEY in refit.extra:
                self.log(f"note: the temperature edgetl calibrate set ({refit.temperature:.4g}) gives way to "
                         "training's own if a better epoch comes; run edgetl calibrate again after this run")

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        self.set_stages(epoch)
        assert self.optimizer is not None
        reseed(self.cfg.seed, epoch)
        set_epoch(self.train_loader, epoch)
        show = show_progress(not self.quiet and self.dist.is_main)
        progress = Progress(TextColumn(f"epoch {epoch + 1}/{self.cfg.epochs}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), console=self.console,
                            transient=True, disable=not show)
        task = progress.add_task("train", total=self.steps_per_epoch, loss=float("nan"))
        with progress if show else nullcontext():
            train, self.step = train_one_epoch(
                self.ddp_model, self.train_loader, self.criterion, self.optimizer, self.settings, epoch=epoch,
                first_step=self.step, lr_for_step=self.lr_for_step, num_classes=self.num_classes,
                on_step=(lambda loss: progress.update(task, advance=1, loss=loss)) if show else None)
        val = validate(self.ddp_model, self.val_loader, self.val_criterion, self.settings, self.num_classes,
                       images=len(self.split.val))
        return {"epoch": epoch + 1, "lr": self.lr_for_step(self.step - 1), "train_loss": train.loss,
                "train_top1": train.top1, "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5,
                **_calibration_row(val, self.cfg.calibrate),
                "trainable_params": self.trainable, "seconds": train.seconds + val.seconds}

    def after_epoch(self, row: dict[str, Any]) -> bool:
        """Record the epoch, write checkpoints; True when early stopping says stop."""
        self.history.append(row)
        value = row[self.cfg.monitor]
        if _improved(value, self.best_value, self.cfg.monitor):
            self.best_value, self.best_epoch, self.bad_epochs = value, row["epoch"], 0
            self.card.metrics = _best_metrics(row)
            self.card.temperature = row.get("temperature", 1.0)
            self.card.extra.pop(REFIT_KEY, None)  # other weights: training's T replaces a refit one
            if self.dist.is_main:
                checkpoint.save_checkpoint(self.run_dir, "best", self.model, self.card)
        else:
            self.bad_epochs += 1
        if self.dist.is_main:
            write_metrics_csv(self.run_dir / "metrics.csv", self.history)
        self.save_state(row["epoch"])
        self.log(epoch_line(row, self.cfg.epochs))
        return self.cfg.patience is not None and self.bad_epochs >= self.cfg.patience

    def score_test(self) -> dict[str, Any]:
        """best.safetensors on the test set, once training is over: the figures no choice was made on.

        Validation chose the epoch (and fitted T), so its best top-1 reads high by the luck of that choice; the
        test set, scored only here, does not. It runs in float32 at the temperature in model.json, as
        ``edgetl eval RUN --data DIR --split test`` does, and the figures go into that card as ``test_*`` metrics.
        """
        if self.best_epoch is None:
            return {}
        self.dist.barrier()  # rank 0 has written best.safetensors and model.json
        card = ModelCard.load(self.run_dir / checkpoint.CARD_FILE)  # a refit T (edgetl calibrate) included
        test = self._test_figures(card.temperature) if self.split.test else {}
        stale = any(k.startswith("test_") for k in card.metrics)  # a test/ since removed, or other weights
        for figures in (card.metrics, self.card.metrics):
            for key in [k for k in figures if k.startswith("test_")]:
                del figures[key]
            figures.update(test)
        if self.dist.is_main and (test or stale):
            card.save(self.run_dir / checkpoint.CARD_FILE)
        return test

    def _test_figures(self, temperature: float) -> dict[str, Any]:
        from edgetl.calibration import calibration_of_logits

        best = self.run_dir / BEST_WEIGHTS
        checkpoint.load_state(self.model, checkpoint.load_tensors(best), source=best, arch=self.card.arch)
        loader = make_loader(ImageDataset(self.split.test, eval_transform(self.card.preprocess)), self.cfg.batch_size,
                             train=False, seed=self.cfg.seed, workers=self.cfg.workers, distributed=self.dist.world > 1)
        stats = validate(self.ddp_model, loader, self.val_criterion, replace(self.settings, amp_dtype=None),
                         self.num_classes, images=len(self.split.test))
        ece = None
        if stats.logits is not None and stats.targets is not None:
            ece = calibration_of_logits(stats.logits.double().numpy(), stats.targets.numpy(), temperature).get("ece")
        found = {"test_images": len(self.split.test), "test_top1": stats.top1, "test_top5": stats.top5,
                 "test_loss": stats.loss, "test_ece": ece, "test_temperature": temperature}
        return {k: v for k, v in found.items() if v is not None}

    def summary(self, test: dict[str, Any]) -> None:
        """The epochs' table, the test figures (or where a test set would go) and which temperature holds."""
        print_summary(self.console, self.history, self.best_epoch, self.run_dir, self.cfg.monitor, test, self.cfg.data,
                      self.split.given)
        if REFIT_KEY in self.card.extra:
            self.log(f"probabilities now: temperature {self.card.temperature:.3g}, refit by edgetl calibrate "
                     f"(on {self.card.extra[REFIT_KEY].get('images', '?')} images); the line above is training's fit")

    def close(self) -> None:
        import gc

        self.ddp_model = self.model  # DDP's reducer must go before its process group does
        gc.collect()  # and with it any gloo work still holding tensors, which aborts the process if freed at exit
        self.dist.close()

    def interrupted(self) -> None:
        """Ctrl-C: say what was kept and how to continue (even with --quiet), then finish the plots."""
        interrupt.quiet_loader_teardown()
        done = self.history[-1]["epoch"] if self.history else 0
        if self.dist.is_main and not self.resumable:
            self.console.print(f"[yellow]{INTERRUPTED_BEFORE_START}[/yellow]", highlight=False)
        elif self.dist.is_main:
            self.console.print(f"[yellow]interrupted: {self.run_dir}/last.safetensors holds epoch {done}; "
                               f"continue with `edgetl train --resume {self.run_dir}`[/yellow]", highlight=False)
        self.finish()

    def finish(self) -> None:
        if self.dist.is_main and self.history:
            plot_curves(self.run_dir / "curves.png", self.history)


def _check_run_dir(cfg: TrainConfig, overwrite: bool) -> None:
    """Refuse to start a new run over a finished or interrupted one, unless asked to."""
    if cfg.resume:
        run_state.require_run_dir(cfg.resume)
        if not os.access(cfg.resume, os.W_OK):
            raise EdgetlError(f"--resume {cfg.resume}: the run directory is not writable; fix its permissions "
                              "(a resumed run writes its checkpoints there)")
        return
    out = Path(cfg.out) if cfg.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise EdgetlError(f"--out {out}: is a file, not a directory; choose another --out")
    if out is not None and (out / "manifest.json").is_file() and not (out / checkpoint.CARD_FILE).is_file():
        raise EdgetlError(f"--out {out}: an export folder (it holds manifest.json), not a run directory; choose "
                          "another --out")
    holds_run = out is not None and any((out / n).exists() for n in (checkpoint.CARD_FILE, run_state.STATE_JSON))
    if holds_run and not overwrite:
        raise EdgetlError(f"--out {out}: already holds a training run; continue it with `edgetl train --resume {out}`, "
                          "choose another --out, or pass --overwrite to replace it")


# What a run and the commands run on it leave in its directory: --overwrite removes them with the run, so no
# score, plot or export of the old weights sits beside the new ones.
RUN_OUTPUTS = (BEST_WEIGHTS, "metrics.csv", "curves.png", SPLIT_FILE, "*eval.json", "*confusion.png",
               "*reliability.png", "export",
               f"*{run_state.PENDING}.safetensors", ".*.tmp")  # these two: saves a kill cut short


def clear_previous_run(run_dir: Path) -> list[str]:
    """Remove the run in ``run_dir`` (``--overwrite``); the names removed, for the log."""
    import shutil

    removed = []
    for pattern in (*run_state.RUN_FILES, *RUN_OUTPUTS):
        for path in sorted(run_dir.glob(pattern)):
            folder = path.is_dir()
            shutil.rmtree(path) if folder else path.unlink()
            removed.append(path.name + ("/" if folder else ""))
    return removed


def _best_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """The card's record of the best epoch (what best.safetensors scored)."""
    return {"best_epoch": row["epoch"], **{k: row[k] for k in ("val_top1", "val_top5", "val_loss", "train_loss",
                                                                "train_top1", "val_ece", "val_ece_calibrated")
                                           if row.get(k) is not None}}


def _calibration_row(val: EpochStats, fit: bool) -> dict[str, Any]:
    """How true the epoch's probabilities are: ECE as trained and, with ``fit``, the temperature
    for the card and the ECE it gives on folds it was not fitted on (or why it stayed 1)."""
    from edgetl import calibration

    if val.logits is None or val.targets is None:
        return {}
    logits, labels = val.logits.double().numpy(), val.targets.numpy()
    if not fit:
        return {"val_ece": calibration.calibration_of_logits(logits, labels)["ece"]}
    result = calibration.choose_temperature(logits, labels)
    row = {"val_ece": result.ece, "temperature": result.temperature, "val_ece_calibrated": result.heldout_ece,
           "temperature_kept": result.kept}
    return {k: v for k, v in row.items() if v is not None}


def _start(tr: Trainer, cfg: TrainConfig) -> None:
    """A new run writes its recipe, then epoch 0's state; a resume finishes a save a kill cut short, then loads.

    The recipe saved is the run's, not how it was launched: as ``--config`` it must start a run, not resume this
    one. A new run writes it first, so a kill during the first save leaves a run ``--resume`` can read; a resume
    rewrites it last, so a refused resume leaves the run as it was.
    """
    recipe, path = replace(cfg, resume=None), tr.run_dir / "config.yaml"
    if not cfg.resume:
        if tr.dist.is_main:
            save_config(recipe, path)
            record_split(tr.run_dir, _paths(cfg), tr.split.digest, tr.split.val_split is not None)
        tr.set_stages(0)
        tr.save_state(0)  # epoch 0's starting point, so even a Ctrl-C in epoch 1 resumes exactly
        return
    if tr.dist.is_main:
        run_state.finish_interrupted_save(tr.run_dir)  # rank 0, holding the lock: nothing else writes here
    tr.dist.barrier()
    tr.restore()
    if tr.dist.is_main:
        save_config(recipe, path)
        changed = record_split(tr.run_dir, _paths(cfg), tr.split.digest, tr.split.val_split is not None)
        if changed:
            warn(f"{cfg.data} changed since this run started ({changed}): the epochs before trained on the old split, "
                 "so val may now hold images they learnt and read high; resume on the data as it was, or start a "
                 "new run")


def _paths(cfg: TrainConfig) -> dict[str, str | None]:
    """The paths a run's ``split.json`` records, so eval, parity and a resume find them from any folder."""
    return {"data": cfg.data, "init": cfg.init, "weights": cfg.weights}


def fit(cfg: TrainConfig, console: Console | None = None, quiet: bool = False,
        list_skipped: bool = True, overwrite: bool = False) -> RunResult:
    """Train ``cfg.model`` on ``cfg.data`` and write the run directory (rank 0 only under DDP).

    A run directory that already holds a run is refused unless ``overwrite``; one process at a time may
    write a run directory (``.lock``).
    """
    cfg.validate()
    if not cfg.data:
        raise EdgetlError("no training data; pass --data DIR (ImageFolder) or a path,label CSV")
    _check_run_dir(cfg, overwrite)
    console = console or Console()
    tr = Trainer(cfg, console, quiet)
    with ExitStack() as hold:
        ctrl_c = hold.enter_context(interrupt.handling())  # left last: the cleanup below is not cut short
        hold.callback(tr.close)
        stopped = False
        try:
            if tr.dist.is_main:
                ensure_writable_dir(tr.run_dir)
                hold.enter_context(dir_lock(tr.run_dir, "training"))
                if overwrite and not cfg.resume:
                    removed = clear_previous_run(tr.run_dir)
                    if removed:
                        tr.log(f"--overwrite: removed the previous run's {', '.join(removed)}")
                if list_skipped:  # False when a caller already listed them (several runs on one data set)
                    report_skipped(tr.split.skipped)
            tr.log(tr.headline())
            with ctrl_c.held():  # state without config.yaml could not be resumed
                _start(tr, cfg)
                tr.resumable = True
            t0 = time.perf_counter()
            for epoch in range(tr.start_epoch, cfg.epochs):
                row = tr.run_epoch(epoch)
                with ctrl_c.held():  # weights, optimizer state and history are saved together
                    stop = tr.after_epoch(row)
                if stop:
                    stopped = True
                    tr.log(f"early stopping: {cfg.monitor} did not improve for {cfg.patience} epochs")
                    break
            test = tr.score_test()
        except KeyboardInterrupt:
            ctrl_c.stopping = True
            tr.interrupted()
            raise Interrupted from None
        tr.finish()
        if tr.dist.is_main and not quiet:
            tr.summary(test)
            tr.log(f"done in {time.perf_counter() - t0:.1f}s")
        tr.dist.barrier()  # no rank tears the process group down while rank 0 still writes
        return RunResult(tr.run_dir, tr.card, tr.history, tr.best_epoch, stopped, test)
