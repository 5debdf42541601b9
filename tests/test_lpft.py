"""LP-FT building blocks: ``--init`` starts from a run's full weights (head included) and ``--freeze-bn``
keeps every BatchNorm's running statistics while the layers train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from edgetl.checkpoint import load_tensors
from edgetl.config import TrainConfig
from edgetl.errors import EdgetlError
from edgetl.train.fit import RunResult, fit

pytestmark = pytest.mark.usefixtures("single_thread")


def _cfg(data: Path, out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"data": str(data), "out": str(out), "model": "test_resnet", "img_size": 32,
                            "batch_size": 16, "device": "cpu"}
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def probe(digits_data: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The run to start from (trained in full: on random tiny weights a probe alone learns little)."""
    out = tmp_path_factory.mktemp("lpft") / "probe"
    return fit(_cfg(digits_data, out, strategy="full", epochs=6, lr=1e-2, warmup_epochs=1), quiet=True)


def _bn_means(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_tensors(path).items() if k.endswith("running_mean")}


def test_init_keeps_the_probe_head_and_freeze_bn_keeps_statistics(probe: RunResult, digits_data: Path,
                                                                   tmp_path: Path) -> None:
    assert probe.best["val_top1"] >= 30.0  # it learnt (chance 10%; a zero-initialised head would answer 10%)
    frozen = fit(_cfg(digits_data, tmp_path / "ft", init=str(probe.run_dir), strategy="full", epochs=1, lr=1e-12,
                      freeze_bn=True), quiet=True)
    # A learning rate of ~0 and frozen statistics leave the probe's function intact: same validation answers.
    assert frozen.history[0]["val_top1"] == pytest.approx(probe.best["val_top1"])
    before, after = _bn_means(probe.run_dir / "best.safetensors"), _bn_means(tmp_path / "ft" / "last.safetensors")
    assert before and all(torch.equal(before[k], after[k]) for k in before)
    assert frozen.card.weights == f"run:{probe.run_dir}"


def test_without_freeze_bn_statistics_move(probe: RunResult, digits_data: Path, tmp_path: Path) -> None:
    # dropout has no weights: the fine-tune may change it
    ft = fit(_cfg(digits_data, tmp_path / "ft", init=str(probe.run_dir), strategy="full", epochs=1, lr=1e-12,
                  head_dropout=0.3), quiet=True)
    assert ft.card.head.dropout == 0.3
    before, after = _bn_means(probe.run_dir / "best.safetensors"), _bn_means(tmp_path / "ft" / "last.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_init_from_another_model_is_a_one_line_error(probe: RunResult, digits_data: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgetlError, match=r"--init .*test_resnet on 10 classes.*same --model"):
        fit(_cfg(digits_data, tmp_path / "x", model="test_efficientnet", init=str(probe.run_dir), epochs=1), quiet=True)
    with pytest.raises(EdgetlError, match=r"--head-hidden 0; this run is .* --head-hidden 8"):
        fit(_cfg(digits_data, tmp_path / "z", init=str(probe.run_dir), head_hidden=8, epochs=1), quiet=True)
    with pytest.raises(EdgetlError, match="choose one"):
        _cfg(digits_data, tmp_path / "y", init=str(probe.run_dir), weights="efficientnet_lite0").validate()
