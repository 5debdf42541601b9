"""The README's Python example runs as printed, on the digits with a tiny model instead of ants and Lite0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SETTINGS = re.compile(r"^data, model, weights, epochs = .*$", re.M)


def library_example() -> str:
    section = README.read_text().split("## As a library", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_library_example_trains_exports_checks_and_predicts(
        digits_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code = library_example()
    assert SETTINGS.search(code), "the example's settings line changed; update this test with it"
    code = SETTINGS.sub(f'data, model, weights, epochs = Path("{digits_data}"), "test_resnet", None, 2', code)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("True [('runs/ants/export/model.onnx', 1.0)")  # FP32 agrees on every image
    classes = {p.name for p in (digits_data / "val").iterdir()}
    answers = [line.rsplit(" ", 1) for line in out[1:]]
    assert len(answers) == 2 and all(Path(src).is_file() and label in classes for src, label in answers)
    assert (tmp_path / "runs" / "ants" / "export" / "manifest.json").is_file()
