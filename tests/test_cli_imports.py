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
