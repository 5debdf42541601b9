"""Every recipe in models/ is valid and trains: one epoch of its architecture at a tiny input size."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgetl.config import EXPORT_RECIPE_KEYS, export_recipe_for, recipe_for, recipes_dir, resolve_config
from edgetl.models.factory import FIRST_CLASS

RECIPES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "models").glob("*.yaml"))


def test_every_first_class_architecture_has_a_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGETL_RECIPES", raising=False)
    assert sorted(FIRST_CLASS) == RECIPES
    assert all((recipes_dir() / f"{name}.yaml").is_file() for name in FIRST_CLASS)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_sections_are_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgetl.export.int8 import CALIB_METHODS
    from edgetl.export.roles import ROLES

    monkeypatch.delenv("EDGETL_RECIPES", raising=False)
    train, export = recipe_for(name), export_recipe_for(name)
    assert train["img_size"] >= 224 and train["batch_size"] >= 1 and train["strategy"] == "full"
    assert set(export) == set(EXPORT_RECIPE_KEYS)
    assert export["calib_method"] in CALIB_METHODS and export["calib_size"] >= 64
    assert set(export["int8_keep_float"]) <= set(ROLES)


@pytest.fixture(scope="module")
def few_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgetl.data.builtin import materialize_builtin

    return materialize_builtin(tmp_path_factory.mktemp("recipes") / "digits", per_class=3, val_fraction=0.34, size=32)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_one_epoch(name: str, few_digits: Path, tmp_path: Path, single_thread: None,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's settings (strategy, head, learning-rate split, clipping) on its real architecture."""
    from edgetl.train.fit import fit

    monkeypatch.delenv("EDGETL_RECIPES", raising=False)
    cfg = resolve_config({"model": name, "data": str(few_digits), "img_size": 32, "epochs": 1, "batch_size": 10,
                          "device": "cpu", "out": str(tmp_path / name)})
    assert cfg.backbone_lr_mult == recipe_for(name)["backbone_lr_mult"]  # the recipe was applied
    result = fit(cfg, quiet=True)
    row = result.history[0]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    assert (tmp_path / name / "best.safetensors").is_file() and result.card.preprocess.input_size == (3, 32, 32)


def test_export_takes_what_was_not_given_from_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgetl.export.pipeline import DEFAULT_CALIB_SIZE, ExportOptions, with_recipe

    monkeypatch.setenv("EDGETL_RECIPES", str(tmp_path))
    (tmp_path / "resnet18.yaml").write_text("export:\n  calib_size: 300\n  calib_method: percentile\n"
                                            "  int8_keep_float: [stem, classifier]\n")
    filled = with_recipe(ExportOptions(), "resnet18")
    assert (filled.calib_size, filled.calib_method, filled.int8_keep_float) == (300, "percentile",
                                                                               ["stem", "classifier"])
    given = with_recipe(ExportOptions(calib_size=64, calib_method="minmax", int8_keep_float=[]), "resnet18")
    assert (given.calib_size, given.calib_method, given.int8_keep_float) == (64, "minmax", [])
    plain = with_recipe(ExportOptions(), "resnet50")  # no recipe in this folder: the defaults
    assert (plain.calib_size, plain.calib_method, plain.int8_keep_float) == (DEFAULT_CALIB_SIZE, "minmax", [])
