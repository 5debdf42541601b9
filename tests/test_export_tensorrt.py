"""The TensorRT exporter without TensorRT: mypy against tensorrt-stubs, the trtexec line, lazy import.

TensorRT cannot be installed on the CI machine, so edgetl/export/tensorrt.py is never executed here;
mypy with the stubs is what catches a wrong API name. A second check proves the stubs are in effect.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgetl.export.tensorrt import EngineOptions, trtexec_command

ROOT = Path(__file__).resolve().parents[1]


def _fix_stub_line(line: str) -> str:
    """tensorrt-stubs 10.13 has lines Python cannot parse: keywords as parameter names, defaults out of order."""
    line = re.sub(r"([(,]\s*)(in|lambda|from|is|def|class|global|pass)\s*:", r"\1\2_:", line)
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not m:
        return line
    params, seen_default = re.split(r",\s*(?![^\[]*\])", m.group(2)), False
    for i, p in enumerate(params):
        if "=" in p:
            seen_default = True
        elif seen_default and p.strip() and not p.strip().startswith("*"):
            params[i] = p + " = ..."
    return m.group(1) + ", ".join(params) + m.group(3)


def _sanitize(path: Path) -> None:
    lines = path.read_text().splitlines()
    for _ in range(500):
        try:
            ast.parse("\n".join(lines), feature_version=(3, 11))
            break
        except SyntaxError as exc:
            n = (exc.lineno or 1) - 1
            fixed = _fix_stub_line(lines[n])
            if fixed == lines[n]:
                raise
            lines[n] = fixed
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def stubs_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mypy config that really reads tensorrt-stubs.

    As installed, the stubs are invisible to ``mypy edgetl``: ``tensorrt/`` has no ``py.typed`` (so the import
    is silently Any under ``ignore_missing_imports``) and the .pyi files contain syntax errors. This copies
    them, repairs those lines, marks them typed and points ``mypy_path`` at the copy.
    """
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    site = Path(spec.origin).parents[1]
    root = tmp_path_factory.mktemp("trt_stubs")
    for pkg in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / pkg, root / pkg, ignore=shutil.ignore_patterns("*.py", "*.so", "__pycache__"))
        (root / pkg / "py.typed").touch()
        for stub in (root / pkg).glob("*.pyi"):
            _sanitize(stub)
    config = root / "mypy.ini"
    config.write_text(
        f"[mypy]\npython_version = 3.11\nignore_missing_imports = True\ncheck_untyped_defs = True\n"
        f"mypy_path = {root}\ncache_dir = {root / '.mypy_cache'}\n\n"
        "[mypy-numpy,numpy.*,torch,torch.*]\nfollow_imports = skip\n\n"  # 30 s of stubs the check does not need
        "[mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]\nignore_errors = True\n\n"
        "[mypy-edgetl.*]\nignore_errors = True\n\n"  # `mypy edgetl` checks the rest; here, the TensorRT modules
        "[mypy-edgetl.export.tensorrt,edgetl.runtime.tensorrt,edgetl.runtime.cuda,bad_trt,bad_runner]\n"
        "disallow_untyped_defs = True\n"
        "ignore_errors = False\n")
    return config


def test_mypy_with_stubs_passes_exporter_and_rejects_wrong_names(stubs_config: Path, tmp_path: Path) -> None:
    """One mypy run: the engine builder and the engine runner are clean; a misspelled TensorRT name is not,
    in a test file or in a copy of the runner (whose TensorRT calls must be typed, not ``Any``)."""
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n\n\n"
        "def flags(config: trt.IBuilderConfig) -> int:\n"
        "    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)\n"  # correct
        "    config.set_memory_pool_limitt(trt.MemoryPoolType.WORKSPACE, 1 << 30)\n"  # misspelled on purpose
        "    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPE)\n"  # misspelled on purpose
    )
    runner = (ROOT / "edgetl/runtime/tensorrt.py").read_text()  # the runner, with one TensorRT name misspelled
    assert runner.count("trt.TensorIOMode.OUTPUT") == 1
    bad_runner = tmp_path / "bad_runner.py"
    bad_runner.write_text(runner.replace("trt.TensorIOMode.OUTPUT", "trt.TensorIOMode.OUTPUTT"))
    modules = ["edgetl/export/tensorrt.py", "edgetl/runtime/tensorrt.py", "edgetl/runtime/cuda.py"]
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(stubs_config), *modules, str(bad),
                             str(bad_runner)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in result.stdout.splitlines() if ": error:" in ln]
    assert not [ln for ln in lines if ln.startswith("edgetl/")], result.stdout
    assert any("set_memory_pool_limitt" in ln for ln in lines), result.stdout
    assert any("STRONGLY_TYPE" in ln for ln in lines), result.stdout
    assert any("bad_runner.py" in ln and "OUTPUTT" in ln for ln in lines), result.stdout  # the runner is checked
    assert len(lines) == 3, result.stdout  # the correct call type-checks: the stubs really are in effect


def test_importing_exporter_does_not_import_tensorrt() -> None:
    code = ("import sys, edgetl.export.tensorrt, edgetl.export.pipeline, edgetl.cli.export; "
            "print('tensorrt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_trtexec_line_matches_options() -> None:
    opts = EngineOptions(input_chw=(3, 224, 224), batch=(1, 8, 32), workspace_mb=2048, timing_cache="tc.cache",
                         version_compatible=True, hardware_compatibility="ampere+", dla_core=0)
    line = trtexec_command("out/model.fp16.onnx", "out/model.fp16.engine", opts)
    assert line.split() == [
        "trtexec", "--onnx=model.fp16.onnx", "--saveEngine=model.fp16.engine", "--stronglyTyped",
        "--minShapes=input:1x3x224x224", "--optShapes=input:8x3x224x224", "--maxShapes=input:32x3x224x224",
        "--memPoolSize=workspace:2048M", "--timingCacheFile=tc.cache", "--versionCompatible",
        "--hardwareCompatibilityLevel=ampere+", "--useDLACore=0", "--allowGPUFallback",
    ]
    static = trtexec_command("m.onnx", "m.engine", EngineOptions(static_batch=4))
    assert "Shapes" not in static and static.endswith("--stronglyTyped")
