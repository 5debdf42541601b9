"""cpp_bench: build edgetl_bench (aoti backend) with CMake, run it on a real .pt2, check answers and JSON.

One CMake build per session into build/cpp_bench (incremental: a no-op when up to date). Without cmake or a
C++ compiler these tests skip locally but fail in CI (CI=true), where the tool must be built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import AOTI_MAX_BATCH, pt2_for_another_cpu, requires_trt

from edgetl.bench.schema import validate
from edgetl.bench.stats import latency_stats

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "cpp_bench"
EXE = BUILD / "edgetl_bench"


def _missing_tools() -> str | None:
    for tool in ("cmake", "make"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        return "no C++ compiler (c++, g++, clang++) on PATH"
    return None


def _cmake(*args: str) -> None:
    proc = subprocess.run(["cmake", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"cmake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def edgetl_bench() -> Path:
    """Configure (first time) and build cpp_bench; the same commands as `make cpp-bench`."""
    missing = _missing_tools()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"cpp_bench cannot be built in CI: {missing}")
        pytest.skip(f"cpp_bench not built: {missing}")
    cache = BUILD / "CMakeCache.txt"
    if cache.is_file() and torch.utils.cmake_prefix_path not in cache.read_text():
        shutil.rmtree(BUILD)  # configured against another torch: its cached libtorch paths are stale
    if not cache.is_file():
        _cmake("-S", str(ROOT / "cpp_bench"), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
               f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", f"-DEDGETL_PYTHON={sys.executable}")
    _cmake("--build", str(BUILD), "-j", "2")
    assert EXE.is_file()
    return EXE


def _run(exe: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cpp_output_matches_pytorch(edgetl_bench: Path, tiny_pt2: tuple, tmp_path: Path) -> None:
    path, model, _ = tiny_pt2
    x = np.random.default_rng(7).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = _run(edgetl_bench, path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert proc.returncode == 0, proc.stderr
    y = np.load(tmp_path / "y.npy")
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert y.shape == ref.shape == (5, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, atol=1e-4, rtol=0)


def test_cpp_json_validates_matches_numpy_stats_and_merges(edgetl_bench: Path, tiny_pt2: tuple,
                                                           tmp_path: Path) -> None:
    from edgetl.bench.harness import BenchConfig, BenchTarget, bench_targets
    from edgetl.bench.report import merge_documents
    from edgetl.bench.schema import host_info, make_document
    from edgetl.runtime.aoti import AotiRunner

    path = tiny_pt2[0]
    cpp_json = tmp_path / "cpp.json"
    proc = _run(edgetl_bench, path, "--batch", "1,4", "--warmup", "2", "--iters", "25", "--json", cpp_json,
                "--save-times")
    assert proc.returncode == 0, proc.stderr
    doc = validate(json.loads(cpp_json.read_text()), source=str(cpp_json))
    assert [r["batch"] for r in doc["results"]] == [1, 4]
    for r in doc["results"]:
        assert (r["backend"], r["device"], r["model"], r["iters"], r["warmup_iters"]) == \
            ("cpp-aoti", "cpu", "test_resnet", 25, 2)
        assert len(r["times_ms"]) == 25
        # The C++ percentiles are numpy's (linear interpolation), computed from the same per-call timings.
        for key, value in latency_stats(r["times_ms"]).items():
            assert r["latency_ms"][key] == pytest.approx(value, rel=1e-6)
        assert r["throughput_ips"] == pytest.approx(r["batch"] * 1000 / r["latency_ms"]["mean"], rel=1e-6)

    with AotiRunner(path) as runner:
        results = bench_targets([BenchTarget("py", runner, str(path))],
                                BenchConfig(batches=(1,), warmup_iters=2, iters=10), progress=False)
    py_json = tmp_path / "py.json"
    py_json.write_text(json.dumps(make_document(results)))
    merged = merge_documents([py_json, cpp_json])
    assert [r["backend"] for r in merged["results"]] == ["aoti", "cpp-aoti", "cpp-aoti"]
    assert "warning" not in merged  # same host: the two reports describe it identically
    assert json.loads(cpp_json.read_text())["host"]["isa"] == host_info()["isa"]  # one flag list, C++ and Python


def test_duration_mode_times_at_least_that_long(edgetl_bench: Path, tiny_pt2: tuple, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    proc = _run(edgetl_bench, tiny_pt2[0], "--duration", "0.3", "--warmup", "1", "--json", out, "--save-times")
    assert proc.returncode == 0, proc.stderr
    (result,) = validate(json.loads(out.read_text()))["results"]
    assert sum(result["times_ms"]) >= 300 and result["iters"] == len(result["times_ms"]) >= 1
    # a tiny --duration alone still takes 20 calls, as edgetl bench does; --warmup-iters is edgetl bench's name
    proc = _run(edgetl_bench, tiny_pt2[0], "--duration", "0.001", "--warmup-iters", "2", "--json", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    (result,) = validate(json.loads(out.read_text()))["results"]
    assert result["iters"] >= 20 and result["warmup_iters"] == 2


def test_merge_through_bench_command(edgetl_bench: Path, tiny_pt2: tuple, tmp_path: Path) -> None:
    """`edgetl bench --merge` (its subcommand module, as the CLI calls it) tables the C++ report."""
    import argparse

    from edgetl.cli import bench

    out = tmp_path / "cpp.json"
    assert _run(edgetl_bench, tiny_pt2[0], "--iters", "5", "--warmup", "1", "--json", out, "--quiet").returncode == 0
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    merged = tmp_path / "merged.json"
    args = parser.parse_args(["--merge", str(out), str(out), "--json", str(merged), "--md", str(tmp_path / "t.md")])
    assert bench.run(args) == 0
    assert [r["backend"] for r in json.loads(merged.read_text())["results"]] == ["cpp-aoti", "cpp-aoti"]
    assert "cpp-aoti" in (tmp_path / "t.md").read_text()


def _bad_npy_files(tmp_path: Path) -> dict[str, Path]:
    files = {"garbage": b"definitely not numpy", "float64": None, "fortran": None, "truncated": None}
    out = {}
    for name, data in files.items():
        p = tmp_path / f"{name}.npy"
        if name == "garbage":
            p.write_bytes(data or b"")
        elif name == "float64":
            np.save(p, np.zeros((1, 3, 32, 32)))
        elif name == "fortran":
            np.save(p, np.asfortranarray(np.zeros((2, 3, 32, 32), np.float32)))
        else:
            np.save(p, np.zeros((2, 3, 32, 32), np.float32))
            p.write_bytes(p.read_bytes()[:-100])
        out[name] = p
    return out


def test_bad_input_is_one_line_error(edgetl_bench: Path, tiny_pt2: tuple, tmp_path: Path) -> None:
    path = tiny_pt2[0]
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((2, 3, 32, 32), np.float32))
    wrong_shape = tmp_path / "wrong_shape.npy"
    np.save(wrong_shape, np.zeros((2, 3, 16, 16), np.float32))
    too_big = tmp_path / "too_big.npy"
    np.save(too_big, np.zeros((AOTI_MAX_BATCH + 1, 3, 32, 32), np.float32))
    not_pt2 = tmp_path / "model.pt2"
    not_pt2.write_bytes(b"PK\x03\x04 but not really a zip")
    out = tmp_path / "y.npy"
    cases: list[tuple[list[str | Path], str]] = [
        ([tmp_path / "missing.pt2"], "file not found"),
        ([not_pt2], "not a readable AOTInductor package"),
        ([tmp_path / "model.onnx"], "unknown artifact type"),
        ([path, "--batch", str(AOTI_MAX_BATCH + 1)], "outside this artifact's batch range 1..8"),
        ([path, "--batch", "1,x"], "expected positive integers"),
        ([path, "--iters", "0"], "--iters 0: expected one positive integer"),
        ([path, "--device", "cuda"], "compiled for cpu, not cuda"),
        ([path, "--bogus"], "unknown option"),
        ([path, "--input", good], "go together"),
        ([path, "--input", tmp_path / "none.npy", "--output", out], "file not found"),
        ([path, "--input", wrong_shape, "--output", out], "does not fit this model"),
        ([path, "--input", too_big, "--output", out], "outside this artifact's batch range"),
        ([tmp_path / "model.engine"], "model.engine: "),  # no trt backend here; no file on GPU CI
    ]
    other_cpu = pt2_for_another_cpu(path, tmp_path / "other_cpu.pt2")
    if other_cpu is not None:  # a package from a CPU with a feature this one lacks: refused, not a crash
        cases.append(([other_cpu[0]], f"compiled for a CPU with {other_cpu[1]}, which this CPU lacks"))
    cases += [([path, "--input", p, "--output", out], "not a float32 .npy file")
              for p in _bad_npy_files(tmp_path).values()]
    for args, message in cases:
        proc = _run(edgetl_bench, *args)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, proc.stderr)
    assert not out.exists()


def _cuda_runtime_header_dir() -> Path | None:
    """cuda_runtime_api.h: the CUDA toolkit's, or the copy PyTorch's CUDA wheels install (nvidia/cu*/include)."""
    dirs = [Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"]
    try:
        import nvidia

        dirs += [d for root in nvidia.__path__ for d in sorted(Path(root).glob("*/include"))]
    except ImportError:
        pass
    return next((d for d in dirs if (d / "cuda_runtime_api.h").is_file()), None)


def test_trt_backend_compiles_against_tensorrt_10_declarations() -> None:
    """TensorRT cannot be installed here, so trt_backend.cpp is compiled (syntax and types only, never linked)
    against tests/trt_api/NvInfer.h: the TensorRT 10 calls it makes, declared from NVIDIA's API docs. This caught
    code that had never compiled (a vexing parse); it cannot catch a call TensorRT lacks but the file declares."""
    cxx = next((shutil.which(c) for c in ("g++", "clang++", "c++") if shutil.which(c)), None)
    include = _cuda_runtime_header_dir()
    if cxx is None or include is None:
        pytest.skip("needs a C++ compiler and cuda_runtime_api.h (CUDA toolkit or PyTorch's nvidia wheels)")
    proc = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                           f"-I{ROOT / 'tests' / 'trt_api'}", f"-I{include}", f"-I{ROOT / 'cpp_bench' / 'src'}",
                           '-DEDGETL_BENCH_VERSION="test"', str(ROOT / "cpp_bench" / "src" / "trt_backend.cpp")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@requires_trt
def test_trt_backend_on_a_real_engine(edgetl_bench: Path, tmp_path: Path) -> None:
    """GPU machines with TensorRT: cpp_bench must have been built with the trt backend, and agree with ORT."""
    from edgetl.export.onnx import onnx_from_model
    from edgetl.export.tensorrt import EngineOptions, engine_from_onnx
    from edgetl.models.factory import card_for, create_model
    from edgetl.runtime.onnxruntime import OrtRunner

    cache = (BUILD / "CMakeCache.txt").read_text()
    assert "EDGETL_WITH_TRT" in (BUILD / "CMakeFiles" / "edgetl_bench.dir" / "flags.make").read_text(), \
        f"TensorRT is installed but cpp_bench was built without it (TENSORRT_ROOT in cache: {'TENSORRT_ROOT' in cache})"
    card = card_for("test_resnet", ["a", "b", "c"], img_size=32)
    onnx_path = onnx_from_model(create_model(card).eval(), card, tmp_path / "model.onnx")
    engine = tmp_path / "model.engine"
    engine_from_onnx(onnx_path, engine, EngineOptions(input_chw=(3, 32, 32), batch=(1, 4, 8)))
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = _run(edgetl_bench, engine, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert proc.returncode == 0, proc.stderr
    with OrtRunner(onnx_path, providers=["cpu"]) as ort:
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ort.infer(x), atol=1e-3)
    for extra in ([], ["--cuda-graph"]):
        out = tmp_path / "trt.json"
        proc = _run(edgetl_bench, engine, "--batch", "1,4", "--iters", "50", "--json", out, *extra)
        assert proc.returncode == 0, proc.stderr
        doc = validate(json.loads(out.read_text()))
        assert {r["backend"] for r in doc["results"]} == {"cpp-trt"} and doc["host"]["gpu"]
