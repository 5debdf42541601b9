"""The fit driver end to end on real (tiny) data: it learns, writes its run directory, resumes exactly,
transfers, stops early, and turns bad input into one-line errors."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import edgetl.cli as cli
from edgetl.card import ModelCard
from edgetl.checkpoint import load_model, load_tensors, save_checkpoint
from edgetl.config import TrainConfig, read_yaml_config
from edgetl.errors import EdgetlError
from edgetl.models.factory import card_for, create_model
from edgetl.train import fit as fit_module
from edgetl.train.fit import RunResult, fit

pytestmark = pytest.mark.usefixtures("single_thread")


def _cfg(data: Path, out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"data": str(data), "out": str(out), "model": "test_resnet", "img_size": 32,
                            "epochs": 6, "lr": 1e-2, "batch_size": 32, "warmup_epochs": 1}
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(digits_data: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return fit(_cfg(digits_data, tmp_path_factory.mktemp("run") / "r", epochs=8, batch_size=16), quiet=True)


def test_model_learns_and_writes_the_run_dir(trained: RunResult) -> None:
    run = trained.run_dir
    assert trained.best["val_top1"] >= 35.0  # 10 classes: chance is 10 %
    for name in ("best.safetensors", "last.safetensors", "model.json", "metrics.csv", "curves.png", "config.yaml"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*.tmp"))  # atomic writes leave no temp files
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert {"train_loss", "val_loss", "val_top1", "val_top5", "lr", "val_ece", "temperature",
            "val_ece_calibrated"} <= set(rows[0])
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    card = ModelCard.load(run / "model.json")
    assert card.arch == "test_resnet" and card.num_classes == 10 and card.strategy == "full"
    assert card.metrics["val_top1"] == trained.best["val_top1"] and "torch" in card.versions and card.seed == 0
    assert card.temperature == trained.best["temperature"]  # the best epoch's, fitted on val (or kept at 1)
    assert card.metrics["val_ece"] == trained.best["val_ece"]
    fitted = [r for r in trained.history if "temperature_kept" not in r]
    assert fitted and all(r["temperature"] != 1.0 and "val_ece_calibrated" in r for r in fitted)
    assert all(r["temperature"] == 1.0 for r in trained.history if "temperature_kept" in r)


def test_no_calibrate_keeps_the_raw_probabilities_and_still_measures_them(digits_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "raw"
    assert cli.main(["train", "--data", str(digits_data), "--out", str(run), "--model", "test_resnet", "--img-size",
                     "32", "--epochs", "1", "--no-calibrate", "--quiet"]) == 0
    card = ModelCard.load(run / "model.json")
    assert card.temperature == 1.0 and card.to_dict()["schema"] == 1 and "val_ece" in card.metrics
    assert "temperature" not in next(csv.DictReader((run / "metrics.csv").open()))


def test_checkpoint_round_trip_gives_identical_logits(tmp_path: Path, trained: RunResult) -> None:
    model, card = load_model(trained.run_dir)
    x = torch.randn(4, 3, 32, 32)
    save_checkpoint(tmp_path, "best", model, card)
    again, _ = load_model(tmp_path)
    with torch.inference_mode():
        assert torch.equal(model(x), again(x))


def test_resume_after_ctrl_c_equals_an_uninterrupted_run(digits_data: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Gradual unfreezing + head dropout + augmentation: everything that must replay on resume."""
    kw = {"epochs": 3, "strategy": "gradual", "unfreeze_every": 1, "head_dropout": 0.2, "batch_size": 16}
    full = fit(_cfg(digits_data, tmp_path / "full", **kw), quiet=True)

    real = fit_module.train_one_epoch

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        if kwargs["epoch"] == 2:  # Ctrl-C three steps into the third epoch
            def stop(loss: float, count: list[int] = [0]) -> None:  # noqa: B006
                count[0] += 1
                if count[0] == 3:
                    raise KeyboardInterrupt
            kwargs["on_step"] = stop
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "train_one_epoch", interrupted)
    monkeypatch.setattr(cli, "COMMANDS", ("train",))
    argv = ["train", "--data", str(digits_data), "--model", "test_resnet", "--img-size", "32", "--epochs", "3",
            "--lr", "0.01", "--warmup-epochs", "1", "--strategy", "gradual", "--unfreeze-every", "1",
            "--head-dropout", "0.2", "--batch-size", "16", "--out", str(tmp_path / "cut"), "--quiet"]
    assert cli.main(argv) == 130
    said = capsys.readouterr()
    assert (said.out + said.err).count("interrupted") == 1 and "--resume" in said.out + said.err
    assert json.loads((tmp_path / "cut" / "train_state.json").read_text())["epochs_done"] == 2
    monkeypatch.setattr(fit_module, "train_one_epoch", real)
    assert cli.main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    saved = read_yaml_config(tmp_path / "cut" / "config.yaml")  # reusable with --config: it must not resume
    assert saved["resume"] is None and saved["strategy"] == "gradual" and saved["out"] == str(tmp_path / "cut")

    a, b = load_tensors(full.run_dir / "last.safetensors"), load_tensors(tmp_path / "cut" / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)
    resumed = json.loads((tmp_path / "cut" / "train_state.json").read_text())["history"]
    assert [r["trainable_params"] for r in resumed] == [r["trainable_params"] for r in full.history]
    assert resumed[0]["trainable_params"] < resumed[1]["trainable_params"] < resumed[2]["trainable_params"]
    for got, want in zip(resumed, full.history, strict=True):
        assert got["val_loss"] == pytest.approx(want["val_loss"], abs=1e-6)
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-6)


def test_ctrl_c_pressed_again_and_again_with_workers_ends_with_one_resume_line(digits_data: Path,
                                                                              tmp_path: Path) -> None:
    """A real `edgetl train --workers 2` and a real SIGINT to its process group, as a terminal's Ctrl-C,
    then again every 20 ms until it exits (an impatient user): exit 130, one resume line, no traceback,
    the epoch it names is the one train_state.json holds, and --resume carries on from there."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "edgetl", "train", "--data", str(digits_data), "--model", "test_resnet",
           "--img-size", "32", "--epochs", "50", "--batch-size", "8", "--workers", "2", "--device", "cpu",
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}  # one line per message
    # A terminal's child takes Ctrl-C; a background job's ignores it, and the child inherits that. So when these
    # tests run in a background job the child is started with SIGINT at its default, as a terminal gives it.
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # a handler, not SIG_IGN: reset at exec
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, outer)
    guard = threading.Timer(60, os.killpg, (proc.pid, signal.SIGKILL))  # a hang fails, never blocks
    guard.start()
    try:
        assert proc.stdout is not None
        said = []
        for line in proc.stdout:  # Ctrl-C in the second epoch: its loader's workers are running
            said.append(line)
            if line.startswith("epoch 1/"):
                break
        while proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        text = "".join(said) + proc.communicate()[0]
    finally:
        guard.cancel()
    assert proc.returncode == 130, text
    assert text.count("interrupted") == 1 and f"--resume {out}" in text, text
    assert not re.search(r"Traceback|Exception ignored|Error", text), text
    kept = int(re.search(r"holds epoch (\d+)", text).group(1))  # type: ignore[union-attr]
    assert kept >= 1 and json.loads((out / "train_state.json").read_text())["epochs_done"] == kept

    resumed = subprocess.run([sys.executable, "-m", "edgetl", "train", "--resume", str(out), "--epochs",
                              str(kept + 1), "--quiet"], capture_output=True, text=True, env=env, timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((out / "train_state.json").read_text())["epochs_done"] == kept + 1


def test_pretrained_backbone_transfers_to_real_photos(hymenoptera: Path, tmp_path: Path) -> None:
    """Linear probe on 48 ant/bee photos: ImageNet Lite0 features beat the same probe on random ones."""
    root = tmp_path / "hymenoptera-small"
    for split in ("train", "val"):
        for cls in ("ants", "bees"):
            (root / split / cls).mkdir(parents=True)
            for p in sorted((hymenoptera / split / cls).glob("*.jpg"))[:24]:
                os.symlink(p, root / split / cls / p.name)
    kw = {"model": "tf_efficientnet_lite0", "strategy": "linear-probe", "img_size": 64, "epochs": 4, "lr": 5e-2,
          "batch_size": 16, "weight_decay": 0.0, "warmup_epochs": 0}
    lite = fit(_cfg(root, tmp_path / "lite", weights="efficientnet_lite0", **kw), quiet=True)
    scratch = fit(_cfg(root, tmp_path / "scratch", **kw), quiet=True)
    assert lite.best["val_top1"] >= 65.0
    assert lite.best["val_top1"] >= scratch.best["val_top1"] + 10.0


def test_early_stopping(digits_data: Path, tmp_path: Path) -> None:
    """A learning rate too small to matter: val top-1 stalls and patience 1 ends the run one epoch later."""
    result = fit(_cfg(digits_data, tmp_path / "r", strategy="linear-probe", lr=1e-9, epochs=6, patience=1),
                 quiet=True)
    assert result.stopped_early and result.best_epoch is not None
    assert len(result.history) == result.best_epoch + 1 < 6
    assert result.history[-1]["val_top1"] <= result.best["val_top1"]
    assert (result.run_dir / "best.safetensors").is_file()


def test_nan_loss_stops_with_a_clear_error(digits_data: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgetlError, match=r"loss became (nan|inf).*epoch 1, step \d+; lower --lr"):
        fit(_cfg(digits_data, tmp_path / "r", lr=1e30, clip_grad=None, warmup_epochs=0), quiet=True)


def test_bad_inputs_are_one_line_errors(digits_data: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgetlError, match="unknown model 'resnet_9000'"):
        fit(_cfg(digits_data, tmp_path / "a", model="resnet_9000"), quiet=True)
    with pytest.raises(EdgetlError, match="data not found"):
        fit(_cfg(tmp_path / "nowhere", tmp_path / "b"), quiet=True)
    with pytest.raises(EdgetlError, match="--amp bf16 needs a CUDA"):
        fit(_cfg(digits_data, tmp_path / "c", amp="bf16", device="cpu"), quiet=True)
    with pytest.raises(EdgetlError, match="--unfreeze 9: this model has 5 stages"):  # before the run dir exists
        fit(_cfg(digits_data, tmp_path / "d", strategy="partial", unfreeze=9), quiet=True)
    assert not (tmp_path / "d").exists()
    # a checkpoint that does not fit its card (other classes) is refused with the mismatch named
    torch.manual_seed(0)
    model = create_model(card_for("test_resnet", ["a", "b", "c"]))
    save_checkpoint(tmp_path / "mismatch", "best", model, card_for("test_resnet", ["a", "b"]))
    with pytest.raises(EdgetlError, match=r"wrong shape 2 \(e.g. fc.weight\)"):
        load_model(tmp_path / "mismatch")
    # a damaged best.safetensors: last.safetensors is suggested only while it reads
    run = tmp_path / "damaged"
    save_checkpoint(run, "best", model, card_for("test_resnet", ["a", "b", "c"]))
    save_checkpoint(run, "last", model, card_for("test_resnet", ["a", "b", "c"]))
    best = (run / "best.safetensors").read_bytes()
    (run / "best.safetensors").write_bytes(best[: len(best) // 2])
    with pytest.raises(EdgetlError, match=f"pass {run / 'last.safetensors'} instead, or train again$"):
        load_model(run)
    (run / "last.safetensors").write_bytes(best[: len(best) // 3])  # damaged too: nothing to point to
    with pytest.raises(EdgetlError, match="best.safetensors: not a readable .*; restore the file or train again$"):
        load_model(run)


def test_cli_reports_unknown_config_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "COMMANDS", ("train",))
    (tmp_path / "c.yaml").write_text("learning-rate: 0.1\n")
    assert cli.main(["train", "--data", str(tmp_path), "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "learning_rate" in err and "valid keys" in err and "\n" not in err


def test_refused_resumes_are_one_line_and_leave_the_run_alone(digits_data: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "COMMANDS", ("train",))
    run = tmp_path / "run"
    fit(_cfg(digits_data, run, epochs=1, strategy="linear-probe"), quiet=True)
    config = (run / "config.yaml").read_text()
    capsys.readouterr()  # the run's own warnings (a frozen random backbone)

    def refused(run_dir: Path, *expected: str, flags: tuple[str, ...] = ()) -> None:
        assert cli.main(["train", "--resume", str(run_dir), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and all(e in err for e in expected), err

    refused(digits_data, "not a resumable run directory (missing config.yaml, model.json")
    refused(tmp_path / "nowhere", "no such directory")
    refused(run, "--strategy full (the run has linear-probe) would change the recipe the run trained with",
            f"--init {run}", flags=("--strategy", "full", "--epochs", "2"))
    refused(run, "--lr 0.5 (the run has 0.01)", "--img-size 64 (the run has 32)",
            flags=("--lr", "0.5", "--img-size", "64"))
    with pytest.raises(EdgetlError, match="optimizer state does not fit"):  # the library, without the CLI's check
        fit(_cfg(digits_data, run, epochs=2, strategy="full", resume=str(run)), quiet=True)
    assert (run / "config.yaml").read_text() == config  # the refused resume did not rewrite the run's recipe
    for name, damage, expected in (("last.safetensors", b"\x00" * 64, "last.safetensors: not a readable"),
                                   ("train_state.json", b"{}", "not a training state (no param_groups")):
        copy = tmp_path / name
        shutil.copytree(run, copy)
        (copy / name).write_bytes(damage)
        refused(copy, expected, "this run cannot be resumed")
    (run / "best.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(EdgetlError, match=f"pass {run / 'last.safetensors'} instead"):
        load_model(run)


def test_resume_on_data_with_another_class_names_only_the_difference(digits_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(digits_data, data)
    run = tmp_path / "run"
    fit(_cfg(data, run, epochs=1), quiet=True)
    for split in ("train", "val", "test"):
        shutil.copytree(data / split / "digit_0", data / split / "digit_new")
    with pytest.raises(EdgetlError) as err:
        fit(_cfg(data, run, epochs=2, resume=str(run)), quiet=True)
    message = str(err.value)
    assert "10 classes are not this data's 11 (only in the data now: digit_new)" in message
    assert "digit_3" not in message and "\n" not in message  # the difference, not both lists
    for split in ("train", "val", "test"):  # as many classes as before, one of them renamed: still another model's
        shutil.rmtree(data / split / "digit_new")
        (data / split / "digit_9").rename(data / split / "digit_z")
    with pytest.raises(EdgetlError, match="classes are not this data's"):
        fit(_cfg(data, run, epochs=2, resume=str(run)), quiet=True)


def test_a_finished_run_is_not_overwritten_and_a_busy_one_not_shared(digits_data: Path, tmp_path: Path) -> None:
    import fcntl

    run = tmp_path / "run"
    fit(_cfg(digits_data, run, epochs=1, strategy="linear-probe"), quiet=True)
    before = (run / "best.safetensors").read_bytes()
    with pytest.raises(EdgetlError, match=rf"--out {run}: already holds a training run; continue it with "
                                          rf"`edgetl train --resume {run}`.*--overwrite"):
        fit(_cfg(digits_data, run, epochs=1, model="test_efficientnet"), quiet=True)
    assert (run / "best.safetensors").read_bytes() == before
    with open(run / ".lock", "a") as held:  # as another edgetl process training here would hold it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(EdgetlError, match="another edgetl process is training in it"):
            fit(_cfg(digits_data, run, epochs=1, strategy="linear-probe"), quiet=True, overwrite=True)
        (run / "last.next.safetensors").write_bytes(b"the live run's save in progress")
        with pytest.raises(EdgetlError, match="another edgetl process is training in it"):
            fit(_cfg(digits_data, run, epochs=2, strategy="linear-probe", resume=str(run)), quiet=True)
        assert (run / "last.next.safetensors").is_file()  # a refused resume touches nothing of the live run
        (run / "last.next.safetensors").unlink()
    (run / "export").mkdir()  # what eval and export left from the old weights goes with them
    for name in ("eval.json", "confusion.png", "reliability.png", "export/model.onnx", "export/manifest.json",
                 "notes.txt"):
        (run / name).write_text("from the old run")
    result = fit(_cfg(digits_data, run, epochs=1, model="test_efficientnet"), quiet=True, overwrite=True)
    assert result.card.arch == "test_efficientnet" == ModelCard.load(run / "model.json").arch
    assert not any((run / name).exists() for name in ("export", "eval.json", "confusion.png", "reliability.png"))
    assert (run / "notes.txt").is_file()  # a file of the user's own is left alone
    with pytest.raises(EdgetlError, match="an export folder .it holds manifest.json., not a run directory"):
        (tmp_path / "exp").mkdir()
        (tmp_path / "exp" / "manifest.json").write_text("{}")
        fit(_cfg(digits_data, tmp_path / "exp", epochs=1), quiet=True)


def test_a_frozen_random_backbone_is_warned_about(digits_data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fit(_cfg(digits_data, tmp_path / "r", strategy="linear-probe", epochs=1), quiet=True)
    err = capsys.readouterr().err
    assert "warning: no --pretrained, --weights or --init: --strategy linear-probe keeps all of a random " \
           "backbone frozen" in err


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in edgetl catches it, so the run directory stays as the kill left it."""


@pytest.mark.parametrize(("moment", "epoch"), [("before the commit", 2), ("after the commit", 2),
                                              ("after the commit", 0)])  # 0: the first save, before any epoch
def test_a_kill_while_saving_resumes_to_the_same_weights(moment: str, epoch: int, digits_data: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An epoch's weights, optimizer state and counters are saved as one: a kill between their files resumes
    to exactly the weights of an uninterrupted run (before: the epoch was silently trained twice)."""
    import edgetl.io

    kw = {"epochs": 2, "batch_size": 16, "warmup_epochs": 0}
    full = fit(_cfg(digits_data, tmp_path / "full", **kw), quiet=True)
    real_write = edgetl.io.atomic_write_json

    def write_then_die(path: Path, data: Any) -> None:
        if Path(path).name == "train_state.json" and data.get("epochs_done") == epoch:
            if moment == "after the commit":
                real_write(path, data)  # committed, the new files not yet renamed into place
            raise Killed  # before: epoch 2's weights and optimizer tensors are written, its JSON is not
        real_write(path, data)

    monkeypatch.setattr(edgetl.io, "atomic_write_json", write_then_die)
    with pytest.raises(Killed):
        fit(_cfg(digits_data, tmp_path / "cut", **kw), quiet=True)
    monkeypatch.undo()
    cut = tmp_path / "cut"
    assert sorted(p.name for p in cut.glob("*.next.safetensors")) == ["last.next.safetensors",
                                                                       "train_state.next.safetensors"]
    assert json.loads((cut / "train_state.json").read_text())["epochs_done"] == epoch - ("before" in moment)
    (cut / ".eval.json.x1.tmp").write_text("another command's write in progress")
    (cut / ".last.safetensors.x2.tmp").write_text("a killed write of training's own")
    fit(_cfg(digits_data, cut, resume=str(cut), **kw), quiet=True)
    assert sorted(p.name for p in cut.glob(".*.tmp")) == [".eval.json.x1.tmp"]  # only training's own tidied
    assert not list(cut.glob("*.next.safetensors"))
    a, b = load_tensors(full.run_dir / "last.safetensors"), load_tensors(cut / "last.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)


def test_files_of_different_saves_are_refused(trained: RunResult, tmp_path: Path) -> None:
    """A weights file from another epoch than train_state.json (copied in by hand, say) is not resumed."""
    from edgetl.train.state import load_train_state

    run = tmp_path / "run"
    shutil.copytree(trained.run_dir, run)
    model, card = load_model(run)
    save_checkpoint(run, "last", model, card, meta={"epochs_done": "1"})
    with pytest.raises(EdgetlError, match=r"last.safetensors: saved after epoch 1, but train_state.json after epoch"):
        load_train_state(run)


def test_resume_may_train_longer_and_says_the_schedule_changes(trained: RunResult, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "COMMANDS", ("train",))
    run = tmp_path / "run"
    shutil.copytree(trained.run_dir, run)
    assert cli.main(["train", "--resume", str(run)]) == 0  # finished: nothing to train
    said = capsys.readouterr()
    assert "already complete (8/8 epochs); pass --epochs N to train longer" in "".join(said.out.split("\n"))
    assert cli.main(["train", "--resume", str(run), "--epochs", "9", "--quiet"]) == 0
    assert "note: --epochs 9 (the run had 8): the learning-rate schedule is recomputed" in capsys.readouterr().err
    assert len(json.loads((run / "train_state.json").read_text())["history"]) == 9


def test_resume_keeps_the_cards_best_metrics_and_an_early_stop(digits_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "es"
    first = fit(_cfg(digits_data, run, epochs=8, patience=1, lr=0.5, batch_size=16), quiet=True)  # lr 0.5: it stalls
    assert first.stopped_early and len(first.history) < 8
    best = ModelCard.load(run / "model.json").metrics
    again = fit(_cfg(digits_data, run, epochs=8, patience=1, lr=0.5, batch_size=16, resume=str(run)), quiet=True)
    assert len(again.history) == len(first.history)  # stopped early: nothing more to train
    assert ModelCard.load(run / "model.json").metrics == best and best["best_epoch"] == first.best_epoch
    assert again.card.temperature == first.card.temperature != 1.0  # the card rebuilt on resume keeps it


def test_the_test_folder_is_scored_once_on_the_best_weights_as_eval_scores_it(digits_data: Path,
                                                                            tmp_path: Path) -> None:
    from edgetl.evaluate import evaluate_artifact

    run = tmp_path / "t"
    result = fit(_cfg(digits_data, run, epochs=8, patience=1, batch_size=16), quiet=True)  # epoch 2 overshoots
    assert result.stopped_early and result.best_epoch < result.history[-1]["epoch"]  # last is not best
    ev = evaluate_artifact(run, digits_data / "test", progress=False)  # best.safetensors, the card's temperature
    test = result.test
    assert test["test_images"] == ev.images == 60
    assert test["test_top1"] == pytest.approx(ev.top1) and test["test_top5"] == pytest.approx(ev.top5)
    assert test["test_loss"] == pytest.approx(ev.loss, abs=1e-4)
    assert test["test_ece"] == pytest.approx(ev.calibration["ece"], abs=1e-4)
    assert {k: v for k, v in ModelCard.load(run / "model.json").metrics.items() if k.startswith("test_")} == test
    last = evaluate_artifact(run / "last.safetensors", digits_data / "test", progress=False)
    assert last.loss != pytest.approx(ev.loss, abs=1e-3)  # the last epoch's weights would have scored otherwise


def test_a_resume_drops_the_test_figures_of_a_test_set_since_removed(digits_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(digits_data, data)
    run = tmp_path / "r"
    fit(_cfg(data, run, epochs=1), quiet=True)
    first = ModelCard.load(run / "model.json").metrics
    assert first["test_images"] == 60
    shutil.rmtree(data / "test")
    again = fit(_cfg(data, run, epochs=1, resume=str(run)), quiet=True)  # complete: nothing trains
    assert again.test == {} and ModelCard.load(run / "model.json").metrics == \
        {k: v for k, v in first.items() if not k.startswith("test_")}


def _said(expected: str, out: str) -> bool:
    """Whether ``out`` says ``expected``; a table caption wraps (mid-path, too) at the table's width."""
    return "".join(expected.split()) in "".join(out.split())


def test_the_summary_says_what_the_val_figures_are_worth(digits_data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    shutil.copytree(digits_data, data, ignore=shutil.ignore_patterns("test"))
    args = ["train", "--model", "test_resnet", "--img-size", "32", "--epochs", "1", "--no-calibrate"]
    assert cli.main([*args, "--data", str(data), "--out", str(tmp_path / "a")]) == 0
    said = capsys.readouterr().out
    assert _said("validation chose this epoch, so its val figures read a little high", said) and "test:" not in said
    assert _said(f"{data / 'test'}/<class>/ is scored after training", said)
    assert cli.main([*args, "--data", str(digits_data), "--out", str(tmp_path / "b")]) == 0
    said = capsys.readouterr().out
    assert _said("140 train / 60 val / 60 test images", said)
    test = ModelCard.load(tmp_path / "b" / "model.json").metrics
    assert _said(f"test: top-1 {test['test_top1']:.1f}% (95% CI ", said)
    assert _said(f"ECE {test['test_ece']:.3f} at T {test['test_temperature']:.3g} on 60 images, scored after training",
                 said)
    assert cli.main(["info", str(tmp_path / "b")]) == 0
    assert _said(f"test top-1 {test['test_top1']:.2f}% (95% CI ", capsys.readouterr().out)
    assert cli.main([*args, "--data", str(data / "train"), "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert "test_top1" not in capsys.readouterr().out  # --quiet: one line, with test_top1 only when there is one
    assert cli.main([*args, "--data", str(digits_data), "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert f"test_top1 {ModelCard.load(tmp_path / 'd' / 'model.json').metrics['test_top1']:.2f}" in \
        capsys.readouterr().out
    assert cli.main([*args, "--data", str(digits_data / "train"), "--out", str(tmp_path / "e")]) == 0
    assert _said(f"pass --data {digits_data} to use the val/ or test/ beside train/", capsys.readouterr().out)


def test_under_torchrun_only_rank_0_prints_the_notes_and_the_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.train import state

    result = RunResult(tmp_path, card_for("test_resnet", ["a", "b"]), [{"epoch": 1, "val_top1": 50.0}], best_epoch=1)
    monkeypatch.setattr(state, "config_for_run", lambda *args, **kw: (TrainConfig(), ["a note"]))
    monkeypatch.setattr(fit_module, "fit", lambda *args, **kw: result)  # what each rank's fit returns
    for rank, speaks in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        assert cli.main(["train", "--data", str(tmp_path), "--quiet"]) == 0
        out, err = capsys.readouterr()
        assert ("note: a note" in err) == speaks and ("best epoch 1 val_top1 50.00" in out) == speaks


def test_clip_grad_zero_turns_clipping_off() -> None:
    from edgetl.cli import build_parser
    from edgetl.cli.train import _overrides
    from edgetl.config import resolve_config

    args = build_parser().parse_args(["train", "--data", "d", "--clip-grad", "0"])
    assert resolve_config(_overrides(args)).clip_grad == 0  # not dropped as "not given" (the default is 1.0)
