"""TensorRT engine provenance checks (pure Python here) and the engine runner (only where TensorRT runs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import requires_gpu, requires_trt

from edgetl.card import ModelCard
from edgetl.errors import EdgetlError
from edgetl.runtime.cuda import INSTALL_HINT, import_tensorrt
from edgetl.runtime.engine_meta import (
    card_from_engine_metadata,
    compatibility_error,
    engine_batch_range,
    engine_metadata,
)

CARD = ModelCard(arch="resnet18", classes=["ants", "bees"])


def test_sidecar_record_and_card(tmp_path: Path) -> None:
    engine = tmp_path / "model_fp16.engine"
    engine.write_bytes(b"x")
    meta = {"tensorrt": "10.13.0.35", "gpu": "NVIDIA H100", "compute_capability": "9.0", "card": CARD.to_dict()}
    (tmp_path / "model_fp16.engine.json").write_text(json.dumps(meta))
    found = engine_metadata(engine)
    assert found["gpu"] == "NVIDIA H100"
    assert card_from_engine_metadata(engine, found).classes == ["ants", "bees"]


def test_manifest_entry_matched_by_file_name(tmp_path: Path) -> None:
    engine = tmp_path / "b.plan"
    engine.write_bytes(b"x")
    manifest = {"card": CARD.to_dict(), "artifacts": [  # the layout edgetl export writes
        {"file": "a.plan", "format": "tensorrt", "precision": "fp16",
         "details": {"tensorrt": "10.3.0", "compute_capability": "8.7"}},
        {"file": "b.plan", "format": "tensorrt", "precision": "int8",
         "details": {"tensorrt": "10.13.0.35", "compute_capability": "9.0", "gpu": "NVIDIA H100",
                     "options": {"batch": [1, 8, 32], "static_batch": None}}}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    meta = engine_metadata(engine)
    assert meta["compute_capability"] == "9.0" and meta["precision"] == "int8"
    assert engine_batch_range(meta) == (1, 32)
    assert card_from_engine_metadata(engine, meta).arch == "resnet18"
    (tmp_path / "b.plan.json").write_text(json.dumps({"tensorrt": "10.13.1", "card": CARD.to_dict()}))
    assert engine_metadata(engine)["tensorrt"] == "10.13.1"  # the sidecar wins, the manifest fills in
    assert engine_metadata(engine)["precision"] == "int8"


def test_engine_without_any_record_needs_metadata(tmp_path: Path) -> None:
    engine = tmp_path / "lonely.engine"
    engine.write_bytes(b"x")
    assert engine_metadata(engine) == {}
    with pytest.raises(EdgetlError, match="no edgetl metadata"):
        card_from_engine_metadata(engine, {})


@pytest.mark.parametrize(("meta", "pattern"), [
    ({"tensorrt": "10.3.0.30", "compute_capability": "9.0"}, "built with TensorRT 10.3.0.30, this machine has 10.13"),
    ({"tensorrt": "10.13.0.35", "gpu": "Orin", "compute_capability": "8.7"}, r"built for Orin \(sm 8.7\)"),
])
def test_mismatched_engine_is_refused_with_rebuild_hint(tmp_path: Path, meta: dict, pattern: str) -> None:
    reason = compatibility_error(tmp_path / "m.engine", meta, "10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
    assert reason is not None and "\n" not in reason
    assert re.search(pattern, reason)
    assert "rebuild it on this machine" in reason
    assert "trtexec --onnx=m.onnx --saveEngine=m.engine --stronglyTyped" in reason


def test_matching_engine_passes() -> None:
    meta = {"tensorrt": "10.13.0.35", "compute_capability": "9.0"}
    assert compatibility_error(Path("m.engine"), meta, "10.13.0.35", "NVIDIA H100", "9.0") is None


def test_stub_only_tensorrt_counts_as_absent() -> None:
    from conftest import has_tensorrt

    if has_tensorrt():
        pytest.skip("real TensorRT installed")
    with pytest.raises(EdgetlError) as err:
        import_tensorrt()
    assert str(err.value) == INSTALL_HINT


@requires_trt
@pytest.mark.trt
@pytest.mark.gpu
def test_engine_runs_and_matches_onnx(tiny_onnx: Path, tmp_path: Path) -> None:
    from edgetl.export.tensorrt import EngineOptions, engine_from_onnx
    from edgetl.runtime import load

    engine = tmp_path / "model.fp32.engine"
    record = engine_from_onnx(tiny_onnx, engine, EngineOptions(input_chw=(3, 64, 64), batch=(1, 4, 8)))
    with load(tiny_onnx, device="cpu") as ref:
        card = ref.card
        batch = np.random.default_rng(0).standard_normal((10, 3, 64, 64)).astype(np.float32)  # > max batch 8
        expected = ref.infer(batch)
    (tmp_path / "model.fp32.engine.json").write_text(json.dumps({**record.to_dict(), "precision": "fp32",
                                                                  "card": card.to_dict()}))
    with load(engine, device="cuda") as trt:
        assert trt.info.backend == "tensorrt" and trt.info.device == "cuda" and trt.info.max_batch == 8
        np.testing.assert_allclose(trt.infer(batch), expected, atol=1e-2)
        fn = trt.compute_call(batch[:4])
        assert len(trt.time_calls(fn, 5)) == 5
    with pytest.raises(EdgetlError, match="2 execution contexts need 2 optimization profiles"):
        load(engine, device="cuda", contexts=2)  # one profile serves one context at a time
    two = tmp_path / "model.fp32.2p.engine"
    record = engine_from_onnx(tiny_onnx, two, EngineOptions(input_chw=(3, 64, 64), batch=(1, 4, 8), profiles=2))
    (tmp_path / "model.fp32.2p.engine.json").write_text(json.dumps({**record.to_dict(), "precision": "fp32",
                                                                     "card": card.to_dict()}))
    with load(two, device="cuda", cuda_graph=True, contexts=2) as trt:
        np.testing.assert_allclose(trt.infer(batch[:3]), expected[:3], atol=1e-2)
        np.testing.assert_allclose(trt.infer(batch[:5]), expected[:5], atol=1e-2)  # graph captured again
        np.testing.assert_allclose(trt.infer(batch[:3]), expected[:3], atol=1e-2)
        outs = trt.infer_pipelined([batch[:8], batch[:3], batch[2:6]])  # type: ignore[attr-defined]
        np.testing.assert_allclose(outs[1], expected[:3], atol=1e-2)
        np.testing.assert_allclose(outs[2], expected[2:6], atol=1e-2)
        whole = trt.infer_pipelined([batch])  # type: ignore[attr-defined]  # 10 > max batch 8: split like infer
        np.testing.assert_allclose(whole[0], expected, atol=1e-2)


@pytest.mark.parametrize(("options", "trt_here", "cc_here", "runs"), [
    ({"version_compatible": True}, "10.16.1.11", "9.0", True),  # later TensorRT: fine
    ({"version_compatible": True}, "10.3.0.30", "9.0", False),  # earlier TensorRT: never
    ({}, "10.16.1.11", "9.0", False),
    ({"hardware_compatibility": "ampere+"}, "10.13.0.35", "8.6", True),  # Ampere+ engine on an RTX 30xx
    ({"hardware_compatibility": "ampere+"}, "10.13.0.35", "7.5", False),  # but not on Turing
    ({"hardware_compatibility": "same-cc"}, "10.13.0.35", "8.6", False),
])
def test_compatibility_options_recorded_at_build_are_honoured(options: dict, trt_here: str, cc_here: str,
                                                              runs: bool) -> None:
    meta = {"tensorrt": "10.13.0.35", "gpu": "NVIDIA H100", "compute_capability": "9.0", "options": options}
    reason = compatibility_error(Path("m.engine"), meta, trt_here, "some GPU", cc_here)
    assert (reason is None) == runs, reason


@pytest.mark.parametrize(("meta", "here", "runs"), [
    ({"tensorrt": "10.3.0.30"}, "10.3.0.26", False),  # same release, other build: TensorRT refuses it
    ({"tensorrt": "10.3.0"}, "10.3.0.30", True),  # a record without the build compares what it has
    ({"tensorrt": "10.3.0.30", "options": {"hardware_compatibility": "ampere+"}, "compute_capability": "8.6"},
     "10.3.0.30", False),  # a desktop Ampere+ engine on a Jetson Orin (sm 8.7, integrated)
    ({"tensorrt": "10.3.0.30", "options": {"hardware_compatibility": "ampere+"}, "compute_capability": "8.7",
      "integrated": True}, "10.3.0.30", True),  # its own Orin's engine
    ({"tensorrt": "10.3.0.30", "options": {"version_compatible": True}}, "10.3.0", True),  # version without build
])
def test_build_number_and_jetson_hardware_compatibility(meta: dict, here: str, runs: bool) -> None:
    meta = {"gpu": "Orin", "compute_capability": "8.7", **meta}
    reason = compatibility_error(Path("m.engine"), meta, here, "Orin", "8.7", integrated=True)
    assert (reason is None) == runs, reason
    if reason and "ampere" in str(meta.get("options")):
        assert "a Jetson runs only engines built for its own GPU" in reason


def test_jetson_ampere_plus_engine_stays_on_its_jetson() -> None:
    """An ampere+ engine built on a Jetson (hardware compatibility unsupported there) is refused on a discrete
    Ampere GPU too, though sm 8.6 >= 8.0 would pass for a desktop-built one."""
    meta = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7", "integrated": True,
            "options": {"hardware_compatibility": "ampere+"}}
    assert compatibility_error(Path("m.engine"), meta, "10.3.0.30", "RTX 3090", "8.6") is not None
    assert compatibility_error(Path("m.engine"), {**meta, "integrated": False}, "10.3.0.30", "RTX 3090", "8.6") is None


def test_rebuild_hint_gives_the_exports_own_lines(tmp_path: Path) -> None:
    """The refusal's fix carries the export's batch profile, not a bare trtexec line that builds batch 1 only."""
    engine = tmp_path / "model.fp16.engine"
    line = "trtexec --onnx=model.fp16.onnx --saveEngine=model.fp16.engine --stronglyTyped --minShapes=input:1x3x8x8"
    (tmp_path / "manifest.json").write_text(json.dumps({"engine_build": {
        "edgetl": "edgetl export runs/a --engine --max-batch 64", "trtexec": {"fp16": line}}}))
    reason = compatibility_error(engine, {"tensorrt": "10.3.0.30"}, "10.13.0.35", "H100", "9.0")
    assert reason is not None and "`edgetl export runs/a --engine --max-batch 64`" in reason and line in reason
    (tmp_path / "manifest.json").unlink()
    reason = compatibility_error(engine, {"tensorrt": "10.3.0.30"}, "10.13.0.35", "H100", "9.0")
    assert reason is not None and "--onnx=model.fp16.onnx --saveEngine=model.fp16.engine" in reason


def test_every_cuda_runtime_call_exists_in_cuda_bindings() -> None:
    """The CUDA path cannot run without a GPU, so check its API statically, as mypy checks TensorRT's:
    every ``cudart.X`` (and ``cudart.Enum.member``) edgetl uses must exist in the installed cuda.bindings."""
    cudart = pytest.importorskip("cuda.bindings.runtime")
    sources = [Path(__file__).parents[1] / name
               for name in ("edgetl/runtime/tensorrt.py", "edgetl/runtime/cuda.py", "benchmarks/gpu_suite.py")]
    used = {m for src in sources for m in re.findall(r"\bcudart\.(\w+(?:\.\w+)?)", src.read_text())}
    assert {"cudaMemcpyAsync", "cudaGraphInstantiate", "cudaMallocHost"} <= {u.split(".")[0] for u in used}
    missing = []
    for name in sorted(used):
        obj = cudart
        for part in name.split("."):
            obj = getattr(obj, part, None)
        missing += [name] if obj is None else []
    assert not missing, f"not in cuda.bindings.runtime: {missing}"
    err, _ = cudart.cudaGetDeviceCount()  # callable without a GPU: an error code, never a crash
    assert isinstance(err, cudart.cudaError_t)


@requires_gpu
@pytest.mark.gpu
def test_cuda_python_half_of_the_engine_runner_on_a_gpu() -> None:
    """What TrtRunner does with cuda-python, run on a GPU without TensorRT: the device's identity, pinned host
    buffers, copies both ways on a stream, and CUDA-event timing, with every result tuple checked."""
    cudart = pytest.importorskip("cuda.bindings.runtime")
    import torch

    from edgetl.runtime.cuda import cuda_check, gpu_identity, pinned_array, set_device

    set_device(0)
    gpu = gpu_identity(0)
    major, minor = torch.cuda.get_device_capability(0)
    assert (gpu.name, gpu.capability) == (torch.cuda.get_device_name(0), f"{major}.{minor}")
    data = np.arange(4096, dtype=np.float16)
    in_ptr, h_in = pinned_array(data.nbytes, np.dtype(np.float16), data.size)
    out_ptr, h_out = pinned_array(data.nbytes, np.dtype(np.float16), data.size)
    device = int(cuda_check(cudart.cudaMalloc(data.nbytes)))
    stream = cuda_check(cudart.cudaStreamCreate())
    start, end = cuda_check(cudart.cudaEventCreate()), cuda_check(cudart.cudaEventCreate())
    try:
        h_in[:] = data
        h_out[:] = 0
        cuda_check(cudart.cudaEventRecord(start, stream))
        cuda_check(cudart.cudaMemcpyAsync(device, in_ptr, data.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))
        cuda_check(cudart.cudaMemcpyAsync(out_ptr, device, data.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
        cuda_check(cudart.cudaEventRecord(end, stream))
        cuda_check(cudart.cudaStreamSynchronize(stream))
        np.testing.assert_array_equal(h_out, data)
        assert float(cuda_check(cudart.cudaEventElapsedTime(start, end))) > 0
        with pytest.raises(EdgetlError, match="CUDA error"):
            cuda_check(cudart.cudaSetDevice(999))
    finally:
        for event in (start, end):
            cudart.cudaEventDestroy(event)
        cudart.cudaStreamDestroy(stream)
        cudart.cudaFree(device)
        cudart.cudaFreeHost(in_ptr)
        cudart.cudaFreeHost(out_ptr)
