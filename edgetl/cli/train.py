"""Fine-tune a timm classifier on a folder of images and write a run directory.

Settings resolve as: built-in defaults < models/<arch>.yaml recipe < --config FILE.yaml < flags. The defaults
shown below are the built-in ones; a model's recipe (models/<arch>.yaml) may set its own.
Launch with `torchrun --nproc_per_node N -m edgetl train ...` for multi-GPU (DDP).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgetl.config import AMP_MODES, AUGMENTS, LOSSES, MONITORS, SAMPLERS, STRATEGIES
from edgetl.errors import INTERRUPTED_BEFORE_START, Interrupted

HELP = "fine-tune a timm classifier on your images"


def _alpha(value: str) -> str | list[float]:
    if value in ("auto", "none"):
        return value
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give 'auto' or comma-separated weights like 0.25,0.75") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Every default is None = "not given", so recipes and --config can fill it (see edgetl.config).
    d = p.add_argument_group("data")
    d.add_argument("--data", help="DIR with train/ and val/ (and test/, scored once after training), DIR/<class>/..., "
                                  "or a path,label[,split] CSV")
    d.add_argument("--val-split", type=float, help="fraction held out when DATA has no val/ (default 0.2)")
    d.add_argument("--img-size", type=int, help="square input size (default: the model's pretrained size)")
    d.add_argument("--augment", choices=AUGMENTS, help="extra augmentation")
    d.add_argument("--sampler", choices=SAMPLERS, help="balanced draws each class equally often")
    d.add_argument("--batch-size", type=int, help="per process (default 32; each recipe in models/ sets its own)")
    d.add_argument("--workers", type=int, help="data loader processes")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="any timm classifier, e.g. tf_efficientnet_lite0, efficientnet_b0, resnet50")
    m.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="timm hub weights (needs network)")
    m.add_argument("--weights", help="FILE (.safetensors/.pth) or efficientnet_lite0 / efficientnet_lite1")
    m.add_argument("--allow-partial-weights", action="store_true", default=None,
                   help="train although --weights leave backbone tensors missing or unused (default: an error)")
    m.add_argument("--init", metavar="RUN_DIR",
                   help="start from a trained run's weights, head included (e.g. fine-tune after a linear probe)")
    m.add_argument("--head-dropout", type=float, help="dropout before the classifier")
    m.add_argument("--head-hidden", type=int, help="hidden units of a Dense-BN-ReLU-Dropout-Dense head (0 = none)")
    t = p.add_argument_group("training")
    t.add_argument("--strategy", choices=STRATEGIES, help="which parameters learn (see docs/strategies.md)")
    t.add_argument("--unfreeze", type=int, help="top backbone stages that learn with --strategy partial")
    t.add_argument("--unfreeze-every", type=int, help="epochs between unfreezing steps with --strategy gradual")
    t.add_argument("--backbone-lr-mult", type=float, help="backbone lr = lr x this (discriminative fine-tuning)")
    t.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the backbone's BatchNorm running statistics while its layers train (small data, LP-FT)")
    t.add_argument("--epochs", type=int, help="(default 10)")
    t.add_argument("--lr", type=float,
                   help="peak learning rate (AdamW) (default 1e-2 for linear-probe, else 1e-3)")
    t.add_argument("--weight-decay", type=float, help="decoupled; never on norms and biases")
    t.add_argument("--warmup-epochs", type=float, help="linear warm-up before the cosine decay")
    t.add_argument("--clip-grad", type=float, help="max gradient norm (0 = off)")
    t.add_argument("--loss", choices=LOSSES, help="ce (cross-entropy) or focal (for imbalanced classes)")
    t.add_argument("--label-smoothing", type=float, help="with --loss ce")
    t.add_argument("--focal-gamma", type=float, help="with --loss focal: how much easy examples are down-weighted")
    t.add_argument("--focal-alpha", type=_alpha,
                   help="'auto' (from class frequencies) or a weight per class, in class order (names sorted as text)")
    t.add_argument("--patience", type=int, help="stop after this many epochs without improvement")
    t.add_argument("--monitor", choices=MONITORS, help="metric for best.safetensors and patience")
    t.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="fit a temperature on the validation set so the probabilities match how often the model is "
                        "right; answers never change")
    r = p.add_argument_group("run")
    r.add_argument("--config", help="YAML file of these options (keys with - or _)")
    r.add_argument("--out", help="run directory (default runs/<model>-<timestamp>)")
    r.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run with its optimizer state")
    r.add_argument("--seed", type=int, help="data split, order, augmentation and initialisation")
    r.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    r.add_argument("--amp", choices=AMP_MODES, help="mixed precision on CUDA")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="on CUDA")
    r.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    _say_defaults(p)


# Defaults that are not one value: said in the option's own help, or meaning "not used".
UNSAID = ("data", "out", "val_split", "img_size", "weights", "init", "lr", "device", "resume", "focal_alpha")


def _say_defaults(p: argparse.ArgumentParser) -> None:
    """Append TrainConfig's default to each option's help: the flags default to None ("not given") so that a
    recipe or --config can fill them, which hides the value from argparse's own "(default: …)"."""
    from dataclasses import fields

    from edgetl.config import TrainConfig

    base = TrainConfig()
    defaults = {f.name: getattr(base, f.name) for f in fields(TrainConfig) if f.name not in UNSAID}
    for action in p._actions:  # noqa: SLF001 - argparse has no public way to list a parser's options
        if action.dest not in defaults or "default" in (action.help or ""):
            continue
        value = defaults[action.dest]
        said = "off" if value is None or value is False else "on" if value is True else value
        action.help = f"{action.help or ''} (default: {said})".lstrip()


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from edgetl.config import VALID_KEYS

    return {k: getattr(args, k) for k in VALID_KEYS if getattr(args, k, None) is not None}  # --clip-grad 0: off


def run(args: argparse.Namespace) -> int:
    """Train. A Ctrl-C before the run has a state to resume says so here; after that, fit says what it kept."""
    try:
        return _train(args)
    except Interrupted:
        raise
    except KeyboardInterrupt:  # while torch and timm load, the data is scanned or the model is built
        print(INTERRUPTED_BEFORE_START, file=sys.stderr)
        raise Interrupted from None


def _train(args: argparse.Namespace) -> int:
    from edgetl.train.distributed import launched_rank
    from edgetl.train.fit import fit
    from edgetl.train.state import config_for_run

    cfg, notes = config_for_run(_overrides(args), config_file=args.config, resume=args.resume)
    speaks = launched_rank() == 0  # under torchrun, one line per run, not one per process
    for note in notes if speaks else ():
        print(f"note: {note}", file=sys.stderr)
    result = fit(cfg, quiet=args.quiet, overwrite=args.overwrite)
    if args.quiet and speaks:
        val = f"val_top1 {result.best.get('val_top1', float('nan')):.2f}"
        test = f" test_top1 {result.test['test_top1']:.2f}" if result.test else ""
        print(f"{result.run_dir}: best epoch {result.best_epoch} {val}{test}")
    return 0
