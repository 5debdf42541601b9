"""A real two-process DDP run with the gloo backend on CPU, launched by torchrun."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from edgetl.card import ModelCard
from edgetl.checkpoint import load_tensors
from edgetl.models.factory import create_model


def test_torchrun_two_processes_gloo(digits_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port),
           "-m", "edgetl", "train", "--data", str(digits_data), "--model", "test_resnet", "--img-size", "32",
           "--epochs", "1", "--batch-size", "16", "--lr", "0.01", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "world 2" in proc.stdout
    assert proc.stdout.count("epoch 1/1") == 1  # only rank 0 reports
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
