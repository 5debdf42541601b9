"""AOTInductor export + Python runtime: a real compile of a tiny timm model, checked against PyTorch."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import AOTI_MAX_BATCH, has_cuda, pt2_for_another_cpu

from edgetl.errors import EdgetlError
from edgetl.export.aoti import pt2_from_model
from edgetl.host import cpu_features
from edgetl.runtime.aoti import AotiRunner, read_pt2_metadata
from edgetl.runtime.loader import runner_from_artifact


def _reference(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_pt2_carries_card_and_batch_range(tiny_pt2: tuple) -> None:
    path, _, card = tiny_pt2
    meta = read_pt2_metadata(path)
    assert meta["edgetl.input_shape"] == "3,32,32"
    assert (meta["edgetl.min_batch"], meta["edgetl.max_batch"]) == ("1", str(AOTI_MAX_BATCH))
    assert meta["AOTI_DEVICE_KEY"] == "cpu"
    assert meta["edgetl.cpu_features"] == ",".join(cpu_features())  # compiled for this CPU (-march=native)
    with AotiRunner(path) as runner:
        assert runner.card == card
        assert runner.info.backend == "aoti"
        assert (runner.info.min_batch, runner.info.max_batch) == (1, AOTI_MAX_BATCH)
        assert runner.info.device == "cpu"


@pytest.mark.parametrize("batch", [1, 5, AOTI_MAX_BATCH, 19])
def test_aoti_runner_matches_pytorch(tiny_pt2: tuple, batch: int) -> None:
    """Any batch size: inside the dynamic range directly, above it split by the Runner base class."""
    path, model, _ = tiny_pt2
    x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    with AotiRunner(path, "cpu") as runner:
        out = runner.infer(x)
    assert out.shape == (batch, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(model, x), atol=1e-4, rtol=1e-4)


def test_loader_dispatches_pt2(tiny_pt2: tuple) -> None:
    path, _, _ = tiny_pt2
    with runner_from_artifact(path) as runner:
        assert isinstance(runner, AotiRunner)
        x = np.zeros((2, 3, 32, 32), np.float32)
        assert runner.infer(x).shape == (2, 3)


@pytest.mark.skipif(has_cuda(), reason="checks the error on a machine without a GPU")
def test_cpu_package_refuses_cuda(tiny_pt2: tuple) -> None:
    with pytest.raises(EdgetlError, match="compiled for cpu, not cuda"):
        AotiRunner(tiny_pt2[0], "cuda")


def test_package_from_a_cpu_with_more_features_is_refused_not_crashed(tiny_pt2: tuple, tmp_path: Path) -> None:
    """Inductor compiles with -march=native: on a CPU without the exporting CPU's features the package would die
    of an illegal instruction. The runner refuses it first, naming what is missing."""
    other = pt2_for_another_cpu(tiny_pt2[0], tmp_path / "model.pt2")
    if other is None:
        pytest.skip("this CPU has every feature edgetl records: no CPU it lacks to pretend")
    path, lacking = other
    with pytest.raises(EdgetlError, match=f"compiled for a CPU with {lacking}, which this CPU lacks"):
        AotiRunner(path)


def test_bad_packages_are_one_line_errors(tmp_path: Path, tiny_pt2: tuple) -> None:
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(b"not a zip at all")
    empty_zip = tmp_path / "empty.pt2"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("x/readme.txt", "hello")
    for path, pattern in [(tmp_path / "missing.pt2", "file not found"), (garbage, "not a readable"),
                          (empty_zip, "no AOTInductor model")]:
        with pytest.raises(EdgetlError, match=pattern) as info:
            AotiRunner(path)
        assert "\n" not in str(info.value)
    with pytest.raises(EdgetlError, match="unknown device"):
        AotiRunner(tiny_pt2[0], "tpu")


def test_pt2_from_model_rejects_bad_arguments(tmp_path: Path, tiny_pt2: tuple) -> None:
    _, model, card = tiny_pt2
    with pytest.raises(EdgetlError, match="1..4096"):
        pt2_from_model(model, card, tmp_path / "m.pt2", max_batch=0)
    with pytest.raises(EdgetlError, match="must end in .pt2"):
        pt2_from_model(model, card, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_export_aoti_records_and_checks_the_package(tmp_path: Path) -> None:
    """`edgetl export --aoti`: the package is judged like every artifact and says whether it was merged."""
    from edgetl.checkpoint import save_checkpoint
    from edgetl.export.pipeline import ExportOptions, export_artifacts
    from edgetl.models.factory import card_for, create_model

    torch.manual_seed(0)
    card = card_for("test_resnet", ["ants", "bees", "wasps"], img_size=32)
    save_checkpoint(tmp_path / "run", "best", create_model(card), card)
    manifest = export_artifacts(tmp_path / "run", tmp_path / "out", ExportOptions(aoti=True, batch=(1, 2, 4),
                                                                                  quiet=True))
    pt2 = manifest.artifact("fp32", "aoti")
    assert pt2.file == "model.pt2" and pt2.details == {"export": {"reparameterized": False}}
    assert pt2.parity is not None and pt2.parity["passed"] and pt2.parity["top1_agreement"] == 1.0
