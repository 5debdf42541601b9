"""Training configuration: one typed dataclass, resolved from four layers.

dataclass defaults < recipe ``models/<arch>.yaml`` < ``--config FILE.yaml`` < command-line flags.
Library code takes a :class:`TrainConfig`, never an argparse namespace, so the same run can be
scripted, tested and reproduced from the ``config.yaml`` written into every run directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError
from edgetl.io import atomic_write_text

STRATEGIES = ("linear-probe", "full", "partial", "gradual")
LOSSES = ("ce", "focal")
MONITORS = ("val_top1", "val_loss")
SAMPLERS = ("random", "balanced")
AMP_MODES = ("auto", "none", "bf16", "fp16")
AUGMENTS = ("none", "randaugment", "trivialaugment")
RECIPES_ENV = "EDGETL_RECIPES"


@dataclass
class TrainConfig:
    """Everything that decides a training run. None means "the default for this model / machine"."""

    data: str | None = None
    model: str = "tf_efficientnet_lite0"
    out: str | None = None
    # data
    val_split: float | None = None
    img_size: int | None = None
    augment: str = "none"
    sampler: str = "random"
    batch_size: int = 32
    workers: int = 0
    # weights and head
    pretrained: bool = False
    weights: str | None = None
    allow_partial_weights: bool = False  # train although --weights fit only part of the backbone
    init: str | None = None  # a run dir: start from its full weights, head included (LP-FT's fine-tune stage)
    head_dropout: float = 0.0
    head_hidden: int = 0
    # what learns
    strategy: str = "full"
    unfreeze: int = 1
    unfreeze_every: int = 1
    backbone_lr_mult: float = 1.0
    freeze_bn: bool = False  # keep every BatchNorm's running statistics, also in layers that train
    # optimisation
    epochs: int = 10
    lr: float | None = None  # None: 1e-2 for linear-probe (only a head to fit), 1e-3 otherwise
    weight_decay: float = 0.05
    warmup_epochs: float = 0.0
    clip_grad: float | None = 1.0
    loss: str = "ce"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    focal_alpha: str | list[float] | None = None
    # control
    patience: int | None = None
    monitor: str = "val_top1"
    calibrate: bool = True  # fit the temperature of the probabilities on the validation set (edgetl.calibration)
    seed: int = 0
    device: str | None = None
    amp: str = "auto"
    channels_last: bool = True
    resume: str | None = None

    @property
    def base_lr(self) -> float:
        """Peak learning rate: ``lr``, or the strategy's default when it is None."""
        if self.lr is not None:
            return self.lr
        return 1e-2 if self.strategy == "linear-probe" else 1e-3

    def validate(self) -> TrainConfig:
        """Check choices and ranges; a bad value is a one-line error naming the valid ones."""
        for name, value, choices in (("strategy", self.strategy, STRATEGIES), ("loss", self.loss, LOSSES),
                                     ("monitor", self.monitor, MONITORS), ("sampler", self.sampler, SAMPLERS),
                                     ("amp", self.amp, AMP_MODES), ("augment", self.augment, AUGMENTS)):
            if value not in choices:
                raise EdgetlError(f"--{name.replace('_', '-')} {value!r}: choose one of {', '.join(choices)}")
        positive: dict[str, float] = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.base_lr,
                                      "unfreeze_every": self.unfreeze_every}
        for key, number in positive.items():
            if number <= 0:
                raise EdgetlError(f"--{key.replace('_', '-')} {number}: must be > 0")
        self._check_ranges()
        if sum(map(bool, (self.pretrained, self.weights, self.init))) > 1:
            raise EdgetlError("--pretrained, --weights and --init name different starting weights; choose one")
        if self.allow_partial_weights and (not self.weights or self.weights in LITE_WEIGHTS):
            raise EdgetlError("--allow-partial-weights applies to --weights FILE (a package's weights always load "
                              "whole); drop it")
        if self.loss == "focal" and self.label_smoothing:
            raise EdgetlError("--label-smoothing applies to --loss ce only; drop it or use --loss ce")
        return self


    def _check_ranges(self) -> None:
        """Numbers that torch would reject with a traceback, or accept and silently misuse."""
        at_least: dict[str, tuple[float | None, float]] = {
            "workers": (self.workers, 0), "head_hidden": (self.head_hidden, 0), "weight_decay": (self.weight_decay, 0),
            "warmup_epochs": (self.warmup_epochs, 0), "backbone_lr_mult": (self.backbone_lr_mult, 0),
            "unfreeze": (self.unfreeze, 0), "img_size": (self.img_size, MIN_IMG_SIZE), "patience": (self.patience, 1),
            "clip_grad": (self.clip_grad, 0)}  # a negative max norm flips the gradients: the loss climbs
        for key, (number, low) in at_least.items():
            if number is not None and number < low:
                raise EdgetlError(f"--{key.replace('_', '-')} {number}: must be >= {low:g}")
        for key, fraction in (("label_smoothing", self.label_smoothing), ("head_dropout", self.head_dropout)):
            if not 0.0 <= fraction < 1.0:
                raise EdgetlError(f"--{key.replace('_', '-')} {fraction}: must lie in [0, 1)")


MIN_IMG_SIZE = 8  # smaller inputs vanish in a backbone's five stride-2 stages
VALID_KEYS = tuple(f.name for f in fields(TrainConfig))


def recipes_dir() -> Path:
    """``models/`` at the repository root (or ``$EDGETL_RECIPES``)."""
    env = os.environ.get(RECIPES_ENV)
    if env:
        return Path(env)
    import edgetl

    return Path(edgetl.__file__).resolve().parents[1] / "models"


def _normalise(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    out = {str(k).replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(out) - set(VALID_KEYS))
    if unknown:
        raise EdgetlError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(VALID_KEYS)}")
    return out


def _yaml_mapping(path: Path, missing: str) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise EdgetlError(f"{path}: {missing}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgetlError(f"{path}: not valid YAML ({first}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise EdgetlError(f"{path}: expected a mapping of option: value, got {type(raw).__name__}")
    return raw


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """A config YAML as a dict of TrainConfig fields (dashes or underscores); unknown keys are an error."""
    p = Path(path)
    values = _normalise(_yaml_mapping(p, "config file not found; pass an existing YAML file to --config"), str(p))
    types = {f.name: str(f.type) for f in fields(TrainConfig)}
    for key, value in values.items():  # checked here: a flag overriding a bad value must not hide it
        try:
            _coerce_value(key, value, types[key])
        except EdgetlError as exc:
            raise EdgetlError(f"{p}: {exc}") from None
    return values


LITE_WEIGHTS = ("efficientnet_lite0", "efficientnet_lite1")  # --weights names of edgetl.models.weights' packages
RECIPE_SECTIONS = ("train", "export")
EXPORT_RECIPE_KEYS = ("calib_size", "calib_method", "int8_keep_float")


def _recipe(model: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(train section, export section, source) of ``models/<model>.yaml``; empty when there is none.

    A recipe has ``train:`` (TrainConfig keys) and ``export:`` (calibration defaults and the layers
    known to lose accuracy in int8); a flat file of TrainConfig keys is read as ``train:`` alone.
    """
    path = recipes_dir() / f"{model.split('.')[0]}.yaml"  # resnet50.tv_in1k: resnet50's recipe
    if not path.is_file():
        return {}, {}, str(path)
    raw = _yaml_mapping(path, "recipe not found")
    if not set(raw) & set(RECIPE_SECTIONS):
        return _normalise(raw, str(path)), {}, str(path)
    unknown = sorted(set(raw) - set(RECIPE_SECTIONS))
    if unknown:
        raise EdgetlError(f"{path}: unknown section(s) {', '.join(unknown)}; a recipe has "
                          f"{' and '.join(RECIPE_SECTIONS)}")
    export = {str(k).replace("-", "_"): v for k, v in (raw.get("export") or {}).items()}
    bad = sorted(set(export) - set(EXPORT_RECIPE_KEYS))
    if bad:
        raise EdgetlError(f"{path}: unknown export key(s) {', '.join(bad)}; valid: {', '.join(EXPORT_RECIPE_KEYS)}")
    return _normalise(raw.get("train") or {}, f"{path} (train)"), export, str(path)


def recipe_for(model: str) -> dict[str, Any]:
    """The tested training defaults for ``model`` from ``models/<model>.yaml``, or {} when there is none."""
    return _recipe(model)[0]


def export_recipe_for(model: str) -> dict[str, Any]:
    """The export defaults for ``model`` (calib_size, calib_method, int8_keep_float), or {}."""
    return _recipe(model)[1]


def _coerce_value(key: str, value: Any, annotation: str) -> Any:
    """``value`` as the field's type (YAML gives ints for floats); anything else is a one-line error."""
    kinds = [k.strip() for k in annotation.split("|")]  # in declared order, for a stable message
    if value is None and "None" in kinds:
        return None
    if "bool" in kinds and isinstance(value, bool):
        return value
    if not isinstance(value, bool):
        if "int" in kinds and isinstance(value, int):
            return value
        if "float" in kinds and isinstance(value, (int, float)):
            return float(value)
        if "str" in kinds and isinstance(value, str):
            return value
        if "list[float]" in kinds and isinstance(value, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
    wanted = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "text",
              "list[float]": "a list of numbers"}
    expected = " or ".join(wanted[k] for k in kinds if k in wanted)
    raise EdgetlError(f"--{key.replace('_', '-')} {value!r}: expected {expected}; fix the flag or the config file")


def _coerce(cfg: TrainConfig) -> TrainConfig:
    """Every field as the type the dataclass declares (YAML and scripts may give others)."""
    for f in fields(TrainConfig):
        setattr(cfg, f.name, _coerce_value(f.name, getattr(cfg, f.name), str(f.type)))
    return cfg


def resolve_config(overrides: Mapping[str, Any] | None = None, config_file: str | Path | None = None,
                   base: Mapping[str, Any] | None = None) -> TrainConfig:
    """Merge the layers: defaults < recipe for the model < ``base`` (e.g. a resumed run's config)
    < ``config_file`` < ``overrides`` (flags; None values mean "not given").
    """
    given = _normalise({k: v for k, v in (overrides or {}).items() if v is not None}, "command line")
    from_file = read_yaml_config(config_file) if config_file else {}
    base_layer = _normalise(base or {}, "base config")
    model = given.get("model") or from_file.get("model") or base_layer.get("model") or TrainConfig.model
    merged: dict[str, Any] = {**recipe_for(str(model)), **base_layer, **from_file, **given}
    return _coerce(replace(TrainConfig(), **merged)).validate()


# flag → (setting it depends on, the values under which the flag does something)
DEPENDENT_FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "unfreeze": ("strategy", ("partial",)),
    "unfreeze_every": ("strategy", ("gradual",)),
    "backbone_lr_mult": ("strategy", ("full", "partial", "gradual")),
    "focal_gamma": ("loss", ("focal",)),
    "focal_alpha": ("loss", ("focal",)),
}


def check_given(cfg: TrainConfig, given: Iterable[str]) -> None:
    """A setting given explicitly that the resolved strategy or loss would ignore is an error, not a no-op.

    Only explicit ones: a recipe's ``backbone_lr_mult`` must not make ``--strategy linear-probe`` fail.
    """
    for key in given:
        if key in DEPENDENT_FLAGS:
            on, values = DEPENDENT_FLAGS[key]
            if getattr(cfg, on) not in values:
                raise EdgetlError(f"--{key.replace('_', '-')} does nothing with --{on} {getattr(cfg, on)} "
                                  f"(it applies to --{on} {' / '.join(values)}); drop it or change --{on}")


# What --resume may change: how the run executes, not what it learns (and --epochs, to train longer or shorter).
RESUME_MAY_CHANGE = ("epochs", "device", "workers", "patience", "amp", "channels_last", "resume")
PATH_KEYS = ("data", "init", "weights")


def check_resume(run: str | Path, saved: TrainConfig, resumed: TrainConfig, given: Iterable[str]) -> list[str]:
    """A flag given with ``--resume`` that would change what the run learns is an error naming it; the notes
    to print for the changes allowed.

    Epochs 1..N trained with the saved recipe; changing the learning rate, size, seed or data afterwards
    would record a recipe the weights never followed.
    """
    def shown(cfg: TrainConfig, key: str) -> object:
        return cfg.base_lr if key == "lr" else getattr(cfg, key)  # lr None: the strategy's default, say which

    def same(key: str) -> bool:
        a, b = shown(saved, key), shown(resumed, key)
        if key in PATH_KEYS and isinstance(a, str) and isinstance(b, str) and Path(a).exists():
            return Path(a).resolve() == Path(b).resolve()  # ../data/ and /abs/data are one folder
        return a == b

    changed = [key for key in given if key not in RESUME_MAY_CHANGE and not same(key)]
    if changed:
        flags = ", ".join(f"--{k.replace('_', '-')} {shown(resumed, k)} (the run has {shown(saved, k)})"
                          for k in changed)
        raise EdgetlError(f"--resume {run}: {flags} would change the recipe the run trained with; resume "
                          f"without it, or start a new run from these weights with --init {run}")
    notes = []
    if resumed.epochs != saved.epochs:
        notes.append(f"--epochs {resumed.epochs} (the run had {saved.epochs}): the learning-rate schedule is "
                     f"recomputed for {resumed.epochs} epochs and the remaining ones follow it")
    if resumed.workers != saved.workers:
        notes.append(f"--workers {resumed.workers} (the run had {saved.workers}): augmentation draws per worker, so "
                     "the rest of the run will not match an uninterrupted one bit for bit")
    return notes


def config_warnings(cfg: TrainConfig) -> list[str]:
    """Settings that run but are probably not what was meant: said before training starts."""
    out = []
    if cfg.warmup_epochs >= cfg.epochs:
        out.append(f"--warmup-epochs {cfg.warmup_epochs:g} >= --epochs {cfg.epochs}: the learning rate only climbs "
                   "and never decays; use fewer warm-up epochs")
    if not (cfg.pretrained or cfg.weights or cfg.init):  # from scratch: fine at full speed only
        hint = "add --pretrained (timm hub) or --weights FILE for transfer learning"
        if cfg.strategy != "full":
            frozen = "all of" if cfg.strategy == "linear-probe" else "most of"
            out.append(f"no --pretrained, --weights or --init: --strategy {cfg.strategy} keeps {frozen} a random "
                       f"backbone frozen; {hint}")
        elif cfg.backbone_lr_mult < 1:
            out.append(f"no --pretrained, --weights or --init: the random backbone learns at lr x "
                       f"{cfg.backbone_lr_mult:g} (--backbone-lr-mult, the recipe's default for pretrained weights); "
                       f"{hint}, or pass --backbone-lr-mult 1 to train from scratch")
    return out


def config_to_yaml(cfg: TrainConfig) -> str:
    """The config as YAML; a None that means "the default" is followed by what it resolved to."""
    import yaml

    text = str(yaml.safe_dump(asdict(cfg), sort_keys=False))
    if cfg.lr is None:
        text = text.replace("\nlr: null\n", f"\nlr: null  # the --strategy {cfg.strategy} default: {cfg.base_lr:g}\n")
    return text


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    atomic_write_text(path, config_to_yaml(cfg))
