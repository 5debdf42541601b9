"""The whole product on one page: data → train → checkpoint → export → artifacts → runtime → report.

Each step is one call into the module that owns it (``edgetl.train.fit``, ``edgetl.evaluate``,
``edgetl.export.pipeline``, ``edgetl.parity``, ``edgetl.bench.harness``); this file only wires them
together and keeps what they return for the report (``edgetl.demo_report``).

Training is LP-FT: a linear probe on the frozen ImageNet backbone, then a short full fine-tune that
starts from the probe (``--init``), at a lower learning rate. The same budget spent training from
random weights is the baseline that shows what the pretrained weights are worth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.config import TrainConfig
from edgetl.errors import EdgetlError

if TYPE_CHECKING:
    from edgetl.data.splits import DataSplit
    from edgetl.evaluate import EvalReport
    from edgetl.export.manifest import Manifest
    from edgetl.parity import ParityReport
    from edgetl.train.fit import RunResult

BUILTIN_PER_CLASS = 100  # 10 digit classes x 100: ~670 train / 330 val (+ 330 test), a few minutes on a laptop
BUILTIN_IMG_SIZE = 128  # the digits are 8x8 upsampled; 128 px keeps ImageNet features useful at 1/3 the cost

PARITY_ALL = 1_000_000  # export's parity and INT8 budget judged on every val image, as the demo's parity is


@dataclass
class DemoOptions:
    """What ``edgetl demo`` runs; None means "the default for the data / machine"."""

    data: Path | None = None  # None: the built-in digits, written under out/data
    model: str = "tf_efficientnet_lite0"
    weights: str | None = "efficientnet_lite0"
    allow_partial_weights: bool = False  # a --weights file that fits only part of the backbone
    out: Path = Path("runs/demo")
    device: str | None = None
    img_size: int | None = None  # None: 128 px for the built-in digits, the model's own size otherwise
    builtin_per_class: int = BUILTIN_PER_CLASS
    probe_epochs: int = 3
    finetune_epochs: int = 2
    finetune_lr: float = 1e-4
    probe_lr: float | None = None  # None: the linear-probe default
    batch_size: int = 32
    baseline: bool = True  # also train from random weights with the same budget
    calib_size: int = 256
    int8_budget: float = 1.0  # top-1 points INT8 may lose; sensitive layers stay in float until it holds
    bench_batches: tuple[int, ...] = (1, 8)
    bench_seconds: float = 1.0
    seed: int = 0
    quiet: bool = False


@dataclass
class DemoResult:
    """Everything the report needs; ``passed`` is False when a parity gate failed."""

    options: DemoOptions
    data: Path
    split: DataSplit
    runs: dict[str, RunResult] = field(default_factory=dict)  # stage: probe, finetune, scratch
    final: str = "finetune"
    evaluation: EvalReport | None = None
    manifests: list[Manifest] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)
    parity: ParityReport | None = None
    bench: dict[str, Any] = field(default_factory=dict)  # edgetl.bench/1 document
    seconds: dict[str, float] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)

    @property
    def final_run(self) -> Path:
        return Path(self.runs[self.final].run_dir)

    @property
    def judged_on(self) -> Path:
        """Where the shipped model and its artifacts are judged: ``test/`` when the data has one (nothing was
        chosen on it), else ``val/``, which chose the epoch, the run and the INT8 layers kept in float."""
        return self.split.folders["test" if self.split.test else "val"]

    @property
    def passed(self) -> bool:
        return bool(self.parity is not None and self.parity.passed and all(m.passed for m in self.manifests))

    def finished(self) -> tuple[EvalReport, ParityReport]:
        """The evaluation and parity reports, which exist once the demo has run them."""
        if self.evaluation is None or self.parity is None:
            raise EdgetlError("the demo has not evaluated and checked parity yet; run run_demo first")
        return self.evaluation, self.parity


def _log(options: DemoOptions, message: str) -> None:
    if not options.quiet:
        from rich.console import Console

        Console().rule(f"[bold]{message}")


def prepare_data(options: DemoOptions) -> tuple[Path, int | None]:
    """(data folder, image size): the user's folder, or the built-in digits written under ``out/data``."""
    if options.data is not None:
        return Path(options.data), options.img_size
    from edgetl.data.builtin import materialize_builtin

    root = materialize_builtin(options.out / "data" / "digits", per_class=options.builtin_per_class,
                               seed=options.seed)
    return root, options.img_size or BUILTIN_IMG_SIZE


def train_configs(options: DemoOptions, data: Path, img_size: int | None) -> dict[str, TrainConfig]:
    """The three runs: linear probe, fine-tune from the probe, and the from-scratch baseline."""
    runs = options.out / "train"
    common: dict[str, Any] = {"data": str(data), "model": options.model, "img_size": img_size,
                              "batch_size": options.batch_size, "device": options.device, "seed": options.seed}
    configs = {
        "probe": TrainConfig(**common, weights=options.weights, pretrained=options.weights is None,
                             allow_partial_weights=options.allow_partial_weights,
                             strategy="linear-probe", epochs=options.probe_epochs, lr=options.probe_lr,
                             out=str(runs / "probe")),
        "finetune": TrainConfig(**common, init=str(runs / "probe"), strategy="full", epochs=options.finetune_epochs,
                                lr=options.finetune_lr, freeze_bn=True, out=str(runs / "finetune")),
    }
    if options.baseline:
        epochs = options.probe_epochs + options.finetune_epochs
        configs["scratch"] = TrainConfig(**common, strategy="full", epochs=epochs, lr=1e-3, out=str(runs / "scratch"))
    return configs


def export_options(options: DemoOptions, data_split: dict[str, Path]) -> list[tuple[Path, Any]]:
    """(out dir, ExportOptions) per export: the deployable TensorRT set, plus a CPU INT8 where no TensorRT.

    TensorRT-style INT8 (symmetric S8) runs slowly on ONNX Runtime's x86 kernels, so on a machine
    without TensorRT the demo also writes the U8 model ONNX Runtime runs fast, to benchmark honestly.
    """
    from edgetl.export.pipeline import ExportOptions
    from edgetl.runtime.cuda import tensorrt_module

    base: dict[str, Any] = {"calib_data": data_split["train"], "val_data": data_split["val"],
                            "calib_size": options.calib_size, "max_accuracy_drop": options.int8_budget,
                            "parity_size": PARITY_ALL,
                            "seed": options.seed, "quiet": options.quiet}
    has_trt = tensorrt_module() is not None
    exports = [(options.out / "export", ExportOptions(**base, fp16=True, int8=True, int8_target="tensorrt",
                                                      engine=has_trt))]
    if not has_trt:
        exports.append((options.out / "export" / "cpu", ExportOptions(**base, int8=True, int8_target="cpu",
                                                                      fp32_onnx=exports[0][0] / "model.onnx")))
    return exports


def _artifacts(manifests: list[tuple[Path, Any]]) -> list[Path]:
    """Every file the exports wrote, once (the CPU export's FP32 duplicates the main one)."""
    seen, out = set(), []
    for folder, manifest in manifests:
        for a in manifest.artifacts:
            key = (a.precision, a.format, a.details.get("int8", {}).get("target"))
            if key not in seen:
                seen.add(key)
                out.append(folder / a.file)
    return out


def _split_dirs(data: Path) -> dict[str, Path]:
    """The data's train/, val/ and (optional) test/ folders, found as training finds them."""
    from edgetl.data.splits import split_folders

    folders = split_folders(data) if data.is_dir() else {}
    if not {"train", "val"} <= set(folders):
        raise EdgetlError(f"{data}: edgetl demo needs DIR/train/<class>/… and DIR/val/<class>/…; "
                          "split your images that way (or use `edgetl train --val-split` step by step)")
    return folders


def run_parity_check(result: DemoResult) -> ParityReport:
    """Every artifact against the trained PyTorch model on all held-out images (``judged_on``), with labels.

    Export already judged each file on val/, and kept INT8 layers in float until its budget held there; this is
    the independent check a user runs on the files as deployed (``edgetl parity``: the artifacts reloaded from
    disk, one report over all of them), so the report shows the command's own verdict rather than the
    exporter's record of itself, on images no choice was made on when the data has test/."""
    from edgetl.parity import compare_artifacts

    return compare_artifacts(result.final_run, result.artifacts, result.judged_on, device=result.options.device,
                             progress=not result.options.quiet)


def run_bench(result: DemoResult) -> dict[str, Any]:
    """PyTorch and every ONNX artifact side by side, interleaved in one process."""
    from edgetl.bench.artifacts import RunnerSettings, bench_artifacts
    from edgetl.bench.harness import BenchConfig

    config = BenchConfig(batches=result.options.bench_batches, duration_s=result.options.bench_seconds,
                         warmup_s=0.3)
    return bench_artifacts([result.final_run, *result.artifacts], config, RunnerSettings(device=result.options.device),
                           progress=not result.options.quiet)


@contextmanager
def _timed(result: DemoResult, stage: str) -> Iterator[None]:
    """Record how long ``stage`` took, for the report's closing line."""
    start = time.perf_counter()
    yield
    result.seconds[stage] = time.perf_counter() - start


def run_demo(options: DemoOptions) -> DemoResult:
    """Train, evaluate, export, check parity, benchmark and write ``report.md`` / ``report.html``."""
    from rich.console import Console
    from rich.markup import escape

    from edgetl.data.folder import report_skipped
    from edgetl.data.splits import scan_data
    from edgetl.demo_report import bench_warnings, write_demo_report
    from edgetl.evaluate import evaluate_artifact, save_report
    from edgetl.export.pipeline import export_artifacts
    from edgetl.train.fit import fit

    clock = time.perf_counter()
    data, img_size = prepare_data(options)
    splits = _split_dirs(data)
    result = DemoResult(options, data, scan_data(data, seed=options.seed))
    report_skipped(result.split.skipped)  # once, not once per training run
    with _timed(result, "train"):
        for stage, cfg in train_configs(options, data, img_size).items():
            _log(options, f"train: {stage} ({cfg.strategy}, {cfg.epochs} epochs)")
            result.runs[stage] = fit(cfg, quiet=options.quiet, list_skipped=False, overwrite=True)  # the demo's own
    if result.runs["probe"].best.get("val_top1", 0) > result.runs["finetune"].best.get("val_top1", 0):
        result.final = "probe"  # the fine-tune did not help on this data: ship the probe
    with _timed(result, "evaluate"):
        _log(options, f"evaluate: {result.final_run}")
        result.evaluation = evaluate_artifact(result.final_run, result.judged_on, device=options.device,
                                              progress=not options.quiet)
        save_report(result.evaluation, options.out / "eval")
    with _timed(result, "export"):
        exports = []
        for out_dir, export_opts in export_options(options, splits):
            _log(options, f"export: {out_dir}")
            exports.append((out_dir, export_artifacts(result.final_run, out_dir, export_opts)))
        result.manifests = [m for _, m in exports]
        result.artifacts = _artifacts(exports)
    with _timed(result, "parity"):
        _log(options, "parity: every artifact against the PyTorch model")
        result.parity = run_parity_check(result)
    with _timed(result, "bench"):
        _log(options, "benchmark: side by side")
        result.bench = run_bench(result)
        for line in bench_warnings(result.bench):  # said now, on stderr, and again in the report
            Console(stderr=True).print(f"[yellow]{escape(line)}[/yellow]", highlight=False, soft_wrap=True)
    result.seconds["total"] = time.perf_counter() - clock
    write_demo_report(result)
    return result
