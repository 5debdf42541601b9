"""Temperature scaling: the fit finds the temperature that generated the labels, never moves an answer, and is
judged on images it was not fitted on; the card carries the temperature to every artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgetl import calibration as cal
from edgetl.card import ModelCard
from edgetl.errors import EdgetlError


def _sampled(temperature: float, n: int = 20_000, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / temperature): a model whose probabilities are off by
    exactly that temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (n, classes))
    probs = cal.softmax(logits, temperature)
    labels = (probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.4, 1.0, 2.5])
def test_the_fit_recovers_the_temperature_that_drew_the_labels(true_t: float) -> None:
    logits, labels = _sampled(true_t)
    t = cal.fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.06)
    best = cal.nll(logits, labels, t)  # a minimum: a step either way costs
    assert best < cal.nll(logits, labels, t * 1.05) and best < cal.nll(logits, labels, t / 1.05)
    assert (cal.softmax(logits, t).argmax(axis=1) == logits.argmax(axis=1)).all()  # no answer moves


def test_probabilities_after_the_fit_match_the_accuracy_on_held_out_folds() -> None:
    """An overconfident model (logits 2.5x what they should be): its ECE falls on images the fit never saw."""
    logits, labels = _sampled(2.5, n=4000)
    raw = cal.calibration_of_logits(logits, labels)
    fit = cal.choose_temperature(logits, labels)
    assert raw["mean_confidence"] > raw["accuracy"] + 0.1 and fit.ece == raw["ece"]
    assert fit.kept is None and fit.temperature == pytest.approx(2.5, rel=0.1)
    assert fit.heldout_ece is not None and fit.heldout_ece < 0.03 < raw["ece"]


def test_the_temperature_stays_1_unless_it_lowers_the_loss_on_held_out_folds() -> None:
    """A model already calibrated mostly keeps T = 1 (a fit would only follow noise); one that is not never does."""
    def kept(t: float) -> int:
        return sum(cal.choose_temperature(*_sampled(t, n=200, seed=seed)).kept is not None for seed in range(20))

    assert kept(1.0) >= 10 and kept(2.0) == 0
    few = cal.choose_temperature(*_sampled(2.0, n=cal.MIN_FIT_IMAGES - 1))
    assert few.temperature == 1.0 and few.kept is not None and "too few to fit it on" in few.kept
    assert few.ece is not None and few.heldout_ece is None
    logits, labels = _sampled(2.0, n=100)
    logits[3, 1] = np.inf
    assert cal.choose_temperature(logits, labels) == cal.TemperatureFit(kept="the validation logits are not all finite")


def test_a_validation_set_it_gets_all_right_stops_the_fit_at_the_bound() -> None:
    logits = np.array([[4.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
    t = cal.fit_temperature(logits, np.array([0, 1, 0]))
    assert t == pytest.approx(cal.T_MIN, rel=1e-6) and cal.at_bound(t) and not cal.at_bound(1.0)
    assert cal.fit_temperature(np.zeros((0, 2)), np.zeros(0, int)) == 1.0


def test_the_training_summary_says_when_the_fit_stopped_at_a_bound_or_kept_1() -> None:
    from edgetl.train.outputs import calibration_line

    row = {"temperature": 0.2, "val_ece": 0.3, "val_ece_calibrated": 0.04, "val_top1": 62.5}
    assert calibration_line(row) == ("probabilities: temperature 0.2, val ECE 0.300 → 0.040 (on held-out folds); "
                                     "answers unchanged")
    assert "the logits are still small" in calibration_line({**row, "temperature": cal.T_MIN})
    assert "every validation image was right" in calibration_line({**row, "temperature": cal.T_MIN, "val_top1": 100.0})
    assert "the logits say little about the answer" in calibration_line({**row, "temperature": cal.T_MAX})
    kept = {"temperature": 1.0, "val_ece": 0.05, "temperature_kept": "2 validation images are too few"}
    assert calibration_line(kept) == ("probabilities: temperature kept at 1 (2 validation images are too few), "
                                      "val ECE 0.050; answers unchanged")


def test_the_note_names_the_fitted_temperature_when_it_did_not_hold() -> None:
    shy = cal.calibration(np.full(4, 0.6), np.ones(4, bool))
    assert "train longer or with a higher --backbone-lr-mult; `edgetl calibrate` fits a temperature on labelled " \
        "images like these" in (cal.calibration_note(shy) or "")
    assert "its temperature (0.5) was fitted on other images" in (cal.calibration_note(shy, 0.5) or "")


def test_the_card_carries_the_temperature_in_the_oldest_schema_that_holds_it() -> None:
    card = ModelCard("resnet18", ["a", "b"])
    assert "temperature" not in card.to_dict() and card.to_dict()["schema"] == 1  # older edgetl reads it
    card.temperature = 0.5
    data = card.to_dict()
    assert data["schema"] == 3 and data["temperature"] == 0.5
    assert ModelCard.from_dict(data).temperature == 0.5
    assert ModelCard.from_metadata(card.to_metadata(), "m.onnx").temperature == 0.5
    for bad in (0, -1.0, float("nan"), "warm"):
        with pytest.raises(EdgetlError, match=r"^m.json: .*(temperature|malformed)"):
            ModelCard.from_dict({**data, "temperature": bad}, source="m.json")
    with pytest.raises(EdgetlError, match="^m.json: card schema 4 is newer than this edgetl supports; upgrade edgetl$"):
        ModelCard.from_dict({**data, "schema": 4, "a_key_of_schema_4": 1}, source="m.json")  # not "unknown keys"
    with pytest.raises(EdgetlError, match=r"malformed model card \(schema 'x' is not a whole number\)"):
        ModelCard.from_dict({**data, "schema": "x"})


def test_bins_have_fixed_edges_and_the_ece_weighs_each_by_its_images() -> None:
    (edge,) = cal.calibration(np.array([0.5]), np.array([True]))["reliability"]
    assert edge["lo"] == 7 / 15 and edge["hi"] == 8 / 15  # 0.5 falls in [7/15, 8/15): the bin is floor(15 p)
    three_to_one = cal.calibration(np.array([0.95, 0.95, 0.95, 0.55]), np.array([True, True, True, False]))
    assert three_to_one["ece"] == pytest.approx((3 * 0.05 + 1 * 0.55) / 4)  # not the bins' plain mean, 0.30


def test_the_fit_reaches_the_upper_bound_and_the_guard_at_its_edges() -> None:
    always_wrong = cal.fit_temperature(np.array([[3.0, 0.0], [0.0, 3.0]]), np.array([1, 0]))
    assert always_wrong == pytest.approx(cal.T_MAX, rel=1e-6) and cal.at_bound(always_wrong)
    logits, labels = _sampled(2.0, n=cal.MIN_FIT_IMAGES, seed=1)  # exactly enough images to fit on
    enough = cal.choose_temperature(logits, labels)
    assert enough.kept is None or "too few" not in enough.kept
    assert cal.choose_temperature(logits, labels) == enough  # the same folds every time: reproducible
    for n in (cal.MIN_FIT_IMAGES, 64):  # logits that say nothing: every T ties, so T stays 1 (not a rounding win)
        tie = cal.choose_temperature(np.zeros((n, 3)), np.arange(n) % 3)
        assert tie.temperature == 1.0 and tie.kept == "a fitted temperature did not lower the loss on held-out folds"


def test_a_card_with_an_infinite_temperature_is_refused() -> None:
    data = {**ModelCard("resnet18", ["a", "b"]).to_dict(), "temperature": float("inf"), "schema": 3}  # JSON's Infinity
    with pytest.raises(EdgetlError, match="^m.json: temperature inf must be a positive number"):
        ModelCard.from_dict(data, source="m.json")


def test_gathered_validation_logits_come_back_in_the_datasets_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks, 59 images: DistributedSampler gives rank r the images r, r + 2, … and rank 1 image 0 again."""
    import torch
    import torch.distributed as dist

    from edgetl.train.loop import _gathered

    order = [*range(59), 0]
    shares = [torch.tensor(order[r::2]) for r in range(2)]

    def all_gather(parts: list[torch.Tensor], local: torch.Tensor) -> None:
        for part, share in zip(parts, shares, strict=True):
            part.copy_(share)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_gather", all_gather)
    assert _gathered(shares[0], 59).tolist() == list(range(59))


def test_the_summary_states_the_best_epochs_temperature_not_the_last() -> None:
    from edgetl.train.outputs import summary_table

    row = {"lr": 0.1, "train_loss": 1.0, "train_top1": 50.0, "val_loss": 1.0, "val_top1": 50.0, "val_top5": 90.0}
    history = [{**row, "epoch": 1, "temperature": 0.5, "val_ece": 0.2, "val_ece_calibrated": 0.05},
               {**row, "epoch": 2, "temperature": 1.0, "val_ece": 0.1, "temperature_kept": "too few"}]
    caption = str(summary_table(history, 1, Path("run"), "val_loss").caption)
    assert "temperature 0.5, val ECE 0.200 → 0.050" in caption and "kept" not in caption


def test_the_reliability_diagram_draws_each_bins_accuracy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from matplotlib.axes import Axes

    from edgetl.evaluate import plot_reliability, report_from_logits

    drawn: dict[str, object] = {}
    bar = Axes.bar

    def recording_bar(self: Axes, x: object, height: object, *args: object, **kwargs: object) -> object:
        drawn.update(x=list(x), height=list(height), width=list(kwargs["width"]))  # type: ignore[call-overload]
        return bar(self, x, height, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Axes, "bar", recording_bar)
    logits, labels = _sampled(2.0, n=300)
    report = report_from_logits(logits, labels, list("abcde"), [f"p{i}" for i in range(300)])
    plot_reliability(report, tmp_path / "r.png")
    bins = report.calibration["reliability"]
    assert drawn["height"] == [b["accuracy"] for b in bins] and drawn["x"] == [b["lo"] for b in bins]
    assert drawn["width"] == pytest.approx([b["hi"] - b["lo"] for b in bins]) and (tmp_path / "r.png").stat().st_size
