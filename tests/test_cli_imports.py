"""`import edgetl` and `edgetl --help` stay light: no optional or heavy package is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("tensorrt", "cuda", "onnxruntime", "torch", "timm", "modelopt", "pycuda", "onnx", "torchvision",
         "matplotlib")

PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy})))
"""


def _loaded(body: str) -> list[str]:
    code = PROBE.format(body=body, heavy=repr(set(HEAVY)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("body", [
    "import edgetl",
    "import edgetl.runtime, edgetl.runtime.loader, edgetl.bench.schema, edgetl.bench.report, edgetl.parity",
    "from edgetl.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "from edgetl.cli import main\nfor c in ('bench', 'parity', 'info', 'calibrate'):\n    try:\n"
    "        main([c, '--help'])\n    except SystemExit:\n        pass",
])
def test_no_heavy_imports(body: str) -> None:
    assert _loaded(body) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["eval", "run", "--data", "d", "--batch-size", "0"], "--batch-size: '0': must be >= 1"),
    (["calibrate", "run", "--data", "d", "--batch-size", "0"], "--batch-size: '0': must be >= 1"),
    (["parity", "a", "b", "--data", "d", "--batch-size", "-1"], "--batch-size: '-1': must be >= 1"),
    (["parity", "a", "b", "--data", "d", "--min-agreement", "150"], "--min-agreement: '150': must be between 0 and 1"),
    (["parity", "a", "b", "--data", "d", "--gate", "int4.max-abs-diff=1"], "expected PRECISION.CHECK=VALUE"),
    (["parity", "a", "b", "--data", "d", "--gate", "fp16.min-agreement=2"], "--gate: '2': must be between 0 and 1"),
    (["bench", "a.onnx", "--iters", "0"], "--iters: '0': must be >= 1"),
    (["bench", "a.onnx", "--duration", "0"], "--duration: '0': must be > 0"),
    (["predict", "run", "x.jpg", "--topk", "a"], "--topk: 'a': expected a whole number >= 1"),
    (["export", "run", "--profiles", "0"], "--profiles: '0': must be >= 1"),
])
def test_bad_numbers_are_usage_errors_before_any_work(argv: list[str], message: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from edgetl.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "usage:" not in err  # one line, not the usage block


def test_cpu_paths_run_without_cuda_python_or_tensorrt(tiny_onnx: Path) -> None:
    """The ONNX Runtime CPU path, bench harness included, must work where cuda-python and TensorRT are absent."""
    body = (f"import sys\nsys.modules['cuda'] = sys.modules['tensorrt'] = None  # importing either now fails\n"
            f"import numpy as np\nfrom edgetl.runtime import load\n"
            f"with load({str(tiny_onnx)!r}, device='cpu') as r:\n"
            f"    out = r.infer(np.zeros((2, *r.input_shape), np.float32))\n"
            f"    assert out.shape == (2, r.card.num_classes), out.shape\n")
    loaded = _loaded(body)  # the subprocess failing (an import of cuda or tensorrt) fails the test
    assert "onnxruntime" in loaded and not [m for m in loaded if m.startswith(("cuda.", "tensorrt."))]
