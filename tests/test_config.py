"""Config layering (defaults < recipe < --config file < flags), validation and the saved config.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgetl.config import (
    VALID_KEYS,
    TrainConfig,
    check_given,
    config_warnings,
    read_yaml_config,
    recipes_dir,
    resolve_config,
    save_config,
)
from edgetl.errors import EdgetlError


@pytest.fixture
def recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "resnet18.yaml").write_text("lr: 0.01\nepochs: 7\nbatch-size: 48\nstrategy: partial\nunfreeze: 2\n")
    monkeypatch.setenv("EDGETL_RECIPES", str(folder))
    return folder


def test_layers_in_order(recipes: Path, tmp_path: Path) -> None:
    cfg = resolve_config({"model": "resnet18"})
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.strategy, cfg.unfreeze) == (0.01, 7, 48, "partial", 2)
    assert cfg.weight_decay == TrainConfig.weight_decay  # untouched default
    user = tmp_path / "user.yaml"
    user.write_text("model: resnet18\nepochs: 3\nlabel_smoothing: 0.1\n")
    cfg = resolve_config({"lr": 0.5, "epochs": None}, config_file=user)  # None = flag not given
    assert (cfg.model, cfg.lr, cfg.epochs, cfg.batch_size, cfg.label_smoothing) == ("resnet18", 0.5, 3, 48, 0.1)
    assert resolve_config({"model": "resnet50"}).lr == TrainConfig.lr  # no recipe for it: defaults
    assert resolve_config({"model": "resnet18.tv_in1k"}).epochs == 7  # a tagged name keeps its arch's recipe
    with pytest.raises(EdgetlError, match="--allow-partial-weights applies to --weights FILE"):
        resolve_config({"model": "resnet18", "allow_partial_weights": True})
    assert TrainConfig(strategy="linear-probe").base_lr == 1e-2 and TrainConfig(strategy="full").base_lr == 1e-3


def test_recipes_dir_defaults_to_repo_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGETL_RECIPES", raising=False)
    assert recipes_dir() == Path(__file__).resolve().parents[1] / "models"


def test_unknown_key_is_one_line_listing_valid_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rate: 0.1\n")
    with pytest.raises(EdgetlError) as info:
        read_yaml_config(bad)
    message = str(info.value)
    assert "learning_rate" in message and "valid keys" in message and "\n" not in message
    assert all(key in message for key in ("lr", "batch_size", "strategy"))


def test_bad_yaml_and_bad_values(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [0.1\n")
    with pytest.raises(EdgetlError, match="not valid YAML"):
        read_yaml_config(broken)
    with pytest.raises(EdgetlError, match="not found"):
        read_yaml_config(tmp_path / "missing.yaml")
    with pytest.raises(EdgetlError, match="linear-probe, full, partial, gradual"):
        resolve_config({"strategy": "half"})
    with pytest.raises(EdgetlError, match="--epochs 0"):
        resolve_config({"epochs": 0})
    # values torch would reject with a traceback mid-setup, or take silently (a negative lr multiplier ascends)
    for key, value, expected in (("img_size", 0, "--img-size 0: must be >= 8"), ("workers", -1, ">= 0"),
                                 ("head_dropout", 1.5, r"\[0, 1\)"), ("backbone_lr_mult", -1, ">= 0"),
                                 ("head_hidden", -2, ">= 0"), ("patience", 0, ">= 1"), ("weight_decay", -0.1, ">= 0"),
                                 ("clip_grad", -1, "--clip-grad -1(.0)?: must be >= 0")):
        with pytest.raises(EdgetlError, match=expected):
            resolve_config({key: value})
    for two in ({"pretrained": True, "weights": "efficientnet_lite0"},
                {"weights": "efficientnet_lite0", "init": "run"}):
        with pytest.raises(EdgetlError, match="different starting weights; choose one"):
            resolve_config(two)


def test_saved_config_reloads_identically(tmp_path: Path) -> None:
    cfg = resolve_config({"data": "/data", "model": "resnet18", "focal_alpha": [0.2, 0.8], "loss": "focal",
                          "clip_grad": None, "warmup_epochs": 1})
    save_config(cfg, tmp_path / "config.yaml")
    again = resolve_config(base=read_yaml_config(tmp_path / "config.yaml"))
    assert again == cfg
    assert set(read_yaml_config(tmp_path / "config.yaml")) == set(VALID_KEYS)


@pytest.mark.parametrize(("line", "pattern"), [
    ("epochs: three", r"--epochs 'three': expected a whole number"),
    ("lr: abc", r"--lr 'abc': expected a number"),
    ("data: [1]", r"--data \[1\]: expected text"),
    ("freeze_bn: maybe", r"--freeze-bn 'maybe': expected true or false"),
    ("focal_alpha: [0.5, x]", r"--focal-alpha \[0.5, 'x'\]: expected text or a list of numbers"),
])
def test_wrongly_typed_config_values_are_one_line_errors(tmp_path: Path, line: str, pattern: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(line + "\n")
    with pytest.raises(EdgetlError, match=f"^{re.escape(str(cfg))}: {pattern}"):
        resolve_config(config_file=cfg)
    key = line.split(":")[0]  # a flag that overrides the bad value does not hide it
    with pytest.raises(EdgetlError, match=pattern):
        resolve_config({key: True if key == "freeze_bn" else "x" if key == "data" else 2}, config_file=cfg)


def test_yaml_numbers_take_the_declared_type(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 1\nweight_decay: 0\nfocal_alpha: [1, 2]\nepochs: 3\n")
    resolved = resolve_config(config_file=cfg)
    assert isinstance(resolved.lr, float) and isinstance(resolved.weight_decay, float)
    assert resolved.focal_alpha == [1.0, 2.0] and resolved.epochs == 3


def test_name_lists_end_in_an_ellipsis_only_when_cut() -> None:
    from edgetl.errors import class_difference, name_list

    assert name_list(["a", "b", "c"]) == "a, b, c"
    assert name_list([str(i) for i in range(12)]) == "0, 1, 2, 3, 4, … (12 in all)"
    assert class_difference(["d0", "d1"], ["d0", "d1", "d3"], "the run", "this data") == "only in this data: d3"


@pytest.mark.parametrize(("given", "message"), [
    ({"strategy": "linear-probe", "backbone_lr_mult": 0.1}, "--backbone-lr-mult does "
                                                            "nothing with --strategy linear-probe"),
    ({"strategy": "full", "unfreeze": 3}, "--unfreeze does nothing with --strategy full (it "
                                          "applies to --strategy partial)"),
    ({"strategy": "partial", "unfreeze_every": 2}, "--unfreeze-every does nothing with --strategy partial"),
    ({"loss": "ce", "focal_alpha": "auto"}, "--focal-alpha does nothing with --loss ce"),
])
def test_a_flag_the_resolved_settings_would_ignore_is_an_error(given: dict[str, object], message: str) -> None:
    cfg = resolve_config({"data": "/d", **given})
    with pytest.raises(EdgetlError, match=re.escape(message)):
        check_given(cfg, given)


def test_a_recipe_setting_is_not_given_by_the_user() -> None:
    cfg = resolve_config({"data": "/d", "model": "resnet18", "strategy": "linear-probe"})
    assert cfg.backbone_lr_mult == 0.1  # from models/resnet18.yaml, inert for a linear probe: no error
    check_given(cfg, ["data", "model", "strategy"])


def test_config_warnings() -> None:
    assert config_warnings(TrainConfig(data="d")) == []  # from scratch at full speed is a choice
    assert config_warnings(TrainConfig(data="d", weights="w", strategy="linear-probe")) == []
    (slow,) = config_warnings(TrainConfig(data="d", backbone_lr_mult=0.1))
    assert "the random backbone learns at lr x 0.1" in slow and "--backbone-lr-mult 1" in slow
    warmup, frozen = config_warnings(TrainConfig(data="d", strategy="partial", warmup_epochs=3, epochs=3))
    assert "only climbs and never decays" in warmup and "keeps most of a random backbone frozen" in frozen


def test_resume_compares_folders_not_spellings_and_names_the_run(tmp_path: Path) -> None:
    from edgetl.config import check_resume

    (tmp_path / "data").mkdir()
    saved = resolve_config({"data": str(tmp_path / "data"), "lr": 0.01})
    same = resolve_config({"data": str(tmp_path / "data") + "/", "lr": 0.01})
    assert check_resume("runs/r", saved, same, ["data", "lr"]) == []
    with pytest.raises(EdgetlError, match=r"--resume runs/r: --lr 0.1 \(the run has 0.01\).*--init runs/r"):
        check_resume("runs/r", saved, resolve_config({"data": str(tmp_path / "data"), "lr": 0.1}), ["lr"])
