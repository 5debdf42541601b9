"""`import edgetl` and `edgetl --help` stay light: no optional or heavy package is loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorrt", "cuda", "onnxruntime", "torch", "timm", "modelopt", "pycuda", "onnx", "torchvision")

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
    "from edgetl.cli import main\nfor c in ('bench', 'parity', 'info'):\n    try:\n        main([c, '--help'])\n"
    "    except SystemExit:\n        pass",
])
def test_no_heavy_imports(body: str) -> None:
    assert _loaded(body) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["eval", "run", "--data", "d", "--batch-size", "0"], "--batch-size: '0': must be >= 1"),
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
