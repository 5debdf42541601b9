"""Shared test helpers: GPU / TensorRT skip markers and the real-photo data set (additive; append freely)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def _find_hymenoptera() -> Path:
    """The real ants/bees photos: $EDGETL_HYMENOPTERA, else ``shared/data/hymenoptera`` beside the checkout
    (or beside the directory tests run from), else the workplace's copy."""
    here = Path(__file__).resolve().parents[2]
    candidates = [Path(os.environ["EDGETL_HYMENOPTERA"])] if os.environ.get("EDGETL_HYMENOPTERA") else []
    candidates += [here / "shared/data/hymenoptera", Path.cwd().parent / "shared/data/hymenoptera",
                   Path("/work/shared/data/hymenoptera")]
    return next((c for c in candidates if (c / "val").is_dir()), candidates[0])


HYMENOPTERA = _find_hymenoptera()


def has_cuda() -> bool:
    """A CUDA GPU visible to PyTorch (torch imported only when asked)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def has_tensorrt() -> bool:
    """The real TensorRT (tensorrt-stubs alone installs a namespace package without ``Runtime``)."""
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "Runtime")


requires_gpu = pytest.mark.skipif(not has_cuda(), reason="requires a CUDA GPU")
requires_trt = pytest.mark.skipif(not (has_cuda() and has_tensorrt()), reason="requires TensorRT and a CUDA GPU")


@pytest.fixture(scope="session")
def hymenoptera() -> Path:
    """Root of the real ants/bees photos (train/ and val/), or skip when this machine lacks them."""
    if not (HYMENOPTERA / "val").is_dir():
        pytest.skip(f"real photos not found at {HYMENOPTERA}")
    return HYMENOPTERA


# --- tiny real artifacts for runtime / bench / parity tests (RUNTIME helper) ---

TINY_ARCH, TINY_SIZE = "test_efficientnet", 64


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory (model.json + best.safetensors) of a tiny timm model with classes ants/bees."""
    import torch

    from edgetl.checkpoint import save_checkpoint
    from edgetl.models.factory import card_for, create_model

    torch.manual_seed(0)
    card = card_for(TINY_ARCH, ["ants", "bees"], img_size=TINY_SIZE)
    run = tmp_path_factory.mktemp("tiny_run")
    save_checkpoint(run, "best", create_model(card).eval(), card)
    return run


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FP32 ONNX (dynamic batch, card in metadata) of ``tiny_run_dir`` through edgetl's exporter."""
    from edgetl.export.onnx import onnx_from_checkpoint

    return onnx_from_checkpoint(tiny_run_dir, tmp_path_factory.mktemp("tiny_onnx") / "model.onnx")


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in digits as an ImageFolder, 20 images per class (14 train / 6 val), 32 px."""
    from edgetl.data.builtin import materialize_builtin

    return materialize_builtin(tmp_path_factory.mktemp("digits") / "digits", per_class=20, val_fraction=0.3)


@pytest.fixture()
def torch_one_thread() -> object:
    """PyTorch on one CPU thread for the test (its OpenMP pool stalls badly on a shared 2-core box)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --- AOTInductor package shared by tests/test_aoti.py and tests/test_cpp_bench.py (CPP helper) ---
# One compile per session (tens of seconds on CPU): a tiny timm model at 32 px, dynamic batch 1..8.
AOTI_MAX_BATCH = 8


@pytest.fixture(scope="session")
def tiny_pt2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    """(model.pt2, the eval-mode torch model it was compiled from, its card)."""
    import torch

    from edgetl.export.aoti import pt2_from_model
    from edgetl.models.factory import card_for, create_model

    torch.manual_seed(0)
    card = card_for("test_resnet", ["ants", "bees", "wasps"], img_size=32)
    model = create_model(card).eval()
    path = pt2_from_model(model, card, tmp_path_factory.mktemp("aoti") / "model.pt2", max_batch=AOTI_MAX_BATCH)
    return path, model, card


def pt2_for_another_cpu(pt2: Path, out: Path) -> tuple[Path, str] | None:
    """A copy of ``pt2`` whose metadata says it was compiled on a CPU with a feature this one lacks, and that
    feature; None on a CPU with every feature edgetl knows (or without /proc/cpuinfo)."""
    import json
    import zipfile

    from edgetl.host import MARCH_FLAGS, cpuinfo

    have = cpuinfo()[1]
    lacking = next((f for f in MARCH_FLAGS if f not in have), None)
    if not have or lacking is None:
        return None
    with zipfile.ZipFile(pt2) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("_metadata.json"):
                meta = json.loads(data)
                meta["edgetl.cpu_features"] = ",".join([*meta["edgetl.cpu_features"].split(","), lacking])
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    return out, lacking


@pytest.fixture(autouse=True, scope="session")
def edgetl_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """edgetl's caches go to a temporary folder during tests, not ~/.cache: the image checks (whose verdicts a
    test must not inherit from a user's earlier run) and the engines ORT's TensorRT provider builds (GPU hosts)."""
    root = tmp_path_factory.mktemp("edgetl-cache")
    wanted = {"EDGETL_ORT_TRT_CACHE": str(root / "ort-tensorrt"), "EDGETL_IMAGE_CHECK_CACHE": str(root / "checks.db")}
    old = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    yield
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread for tiny-model training tests: on 2 shared cores, OpenMP spin-waiting with
    2 threads is several times slower for 32 px models. The previous setting is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
