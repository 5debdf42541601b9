"""A real two-process DDP run with the gloo backend on CPU, launched by torchrun."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgetl.calibration import choose_temperature
from edgetl.card import ModelCard
from edgetl.checkpoint import load_tensors
from edgetl.evaluate import evaluate_artifact
from edgetl.models.factory import create_model
from edgetl.runtime.loader import deployed_runner
from edgetl.runtime.predictor import Predictor


def _torchrun(*args: str) -> list[str]:
    """Two processes on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(port), *args]


def test_torchrun_two_processes_gloo(digits_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "digits"
    shutil.copytree(digits_data, data)
    next((data / "val" / "digit_0").iterdir()).unlink()  # 59 val images: DistributedSampler repeats one
    next((data / "test" / "digit_1").iterdir()).unlink()  # and 59 test images
    out = tmp_path / "ddp"
    train = ["-m", "edgetl", "train", "--data", str(data), "--model", "test_resnet", "--img-size", "32",
             "--epochs", "1", "--batch-size", "16", "--lr", "0.03", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(_torchrun(*train, "--out", str(out)), capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "world 2" in proc.stdout
    assert proc.stdout.count("epoch 1/1") == 1 and proc.stdout.count("test: top-1") == 1  # only rank 0 reports
    quiet = subprocess.run(_torchrun(*train, "--out", str(tmp_path / "quiet"), "--quiet"), capture_output=True,
                           text=True, timeout=300, env=env)
    assert quiet.returncode == 0 and quiet.stdout.count("best epoch") == 1, quiet.stdout + quiet.stderr
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 1
    assert not list(out.glob(".*.tmp"))
    # trained: the weights moved away from the seed's initialisation
    card = ModelCard.load(out / "model.json")
    torch.manual_seed(0)
    initial = create_model(card).state_dict()
    trained = load_tensors(out / "last.safetensors")
    assert not torch.equal(initial["fc.weight"], trained["fc.weight"])
    assert not torch.equal(initial["layer1.0.conv1.weight"], trained["layer1.0.conv1.weight"])
    # validation saw each of the 59 images once, as edgetl eval does: same top-1, loss and temperature
    report = evaluate_artifact(out, data / "val", device="cpu", progress=False)
    assert report.images == 59 and float(rows[0]["val_top1"]) == pytest.approx(report.top1, abs=1e-4)
    assert float(rows[0]["val_loss"]) == pytest.approx(report.loss, rel=1e-4)
    test = evaluate_artifact(out, data / "test", device="cpu", progress=False)  # scored by both ranks, as val is
    assert card.metrics["test_images"] == test.images == 59
    assert card.metrics["test_top1"] == pytest.approx(test.top1, abs=1e-4)
    assert card.metrics["test_loss"] == pytest.approx(test.loss, rel=1e-4)
    with deployed_runner(out, device="cpu") as runner:
        paths = sorted((data / "val").glob("*/*.png"))
        logits = Predictor(runner).logits(paths)
    labels = np.array([card.classes.index(p.parent.name) for p in paths])
    fitted = choose_temperature(logits, labels)  # the same images in the same order: the same folds and verdict
    assert card.temperature == pytest.approx(fitted.temperature, rel=1e-3)
    held = rows[0].get("val_ece_calibrated") or None  # blank, or no column, when the temperature stayed 1
    assert (held is None) == (fitted.heldout_ece is None)
    assert held is None or float(held) == pytest.approx(fitted.heldout_ece, abs=1e-4)
    assert float(rows[0]["val_ece"]) == pytest.approx(fitted.ece, abs=1e-4)
