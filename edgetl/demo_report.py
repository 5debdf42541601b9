"""``report.md`` / ``report.html`` for ``edgetl demo``: what was trained, how well, what was shipped, how fast.

Reads only what :func:`edgetl.demo.run_demo` returns; every figure comes from a run directory, the
export manifests, the parity report or the benchmark document written beside the report.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.bench.schema import host_label
from edgetl.io import atomic_write_json
from edgetl.report import CLASS_ROWS, Section, Table, write_report

if TYPE_CHECKING:
    from edgetl.demo import DemoResult
    from edgetl.evaluate import EvalReport


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _judged_on_words(result: DemoResult) -> str:
    """What the evaluation and parity images are, in words."""
    return "test images (held out: nothing was chosen on them)" if result.split.test else "validation images"


def data_section(result: DemoResult) -> Section:
    split = result.split
    names = ["train", "val", "test"] if split.test else ["train", "val"]
    counts = [Counter(s.label for s in getattr(split, name)) for name in names]
    shown = sorted(range(len(split.classes)), key=lambda i: (*(c[i] for c in counts), i))[:CLASS_ROWS]
    rows = [[split.classes[i], *(str(c[i]) for c in counts)] for i in sorted(shown)]
    rows.append(["**total**", *(str(len(getattr(split, name))) for name in names)])
    source = "the built-in digits (scikit-learn)" if result.options.data is None else str(result.data)
    text = [f"Data: {source} at `{result.data}`, {len(split.classes)} classes, chance = "
            f"{100 / len(split.classes):.1f}% top-1."]
    if len(shown) < len(split.classes):
        text.append(f"The table lists the {len(shown)} classes with the fewest training images.")
    if split.skipped:
        text.append(f"Skipped {len(split.skipped)} unusable file(s): " +
                    "; ".join(f"`{p}` ({r})" for p, r in split.skipped[:5]))
    text.append("Validation chooses the best epoch, the run shipped and the INT8 layers kept in float"
                + ("; the test images are scored only after those choices." if split.test else
                   "; with no DIR/test/, the figures below are on those same images and may read a little high."))
    return Section("Data", text, [Table(["class", *names], rows)])


def plot_training(result: DemoResult, path: Path) -> Path:
    """Validation top-1 per epoch: probe then fine-tune on one axis, the from-scratch baseline beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from edgetl.io import atomic_path

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    probe, finetune = result.runs["probe"].history, result.runs["finetune"].history
    start = next((r for r in probe if r["epoch"] == result.runs["probe"].best_epoch), probe[-1])
    series = (("linear probe", [(r["epoch"], r) for r in probe]),  # the fine-tune starts from the probe's best
              ("fine-tune", [(start["epoch"], start), *((len(probe) + r["epoch"], r) for r in finetune)]))
    for stage, points in series:
        xs = [x for x, _ in points]
        ax_acc.plot(xs, [r["val_top1"] for _, r in points], "o-", label=f"{stage} (val)")
        ax_loss.plot(xs, [r["train_loss"] for _, r in points], "o-", label=f"{stage} (train)")
    for ax in (ax_acc, ax_loss):
        ax.axvline(len(probe) + 0.5, color="grey", lw=0.8, ls="--")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if "scratch" in result.runs:
        hist = result.runs["scratch"].history
        ax_acc.plot([r["epoch"] for r in hist], [r["val_top1"] for r in hist], "s--", label="from scratch (val)")
        ax_loss.plot([r["epoch"] for r in hist], [r["train_loss"] for r in hist], "s--", label="from scratch (train)")
    ax_acc.axhline(100 / len(result.split.classes), color="grey", lw=1, ls=":", label="chance")
    for ax, title in ((ax_acc, "validation top-1 (%)"), (ax_loss, "training loss")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def training_section(result: DemoResult) -> Section:
    rows = []
    for stage, run in result.runs.items():
        best = run.best
        what = {"probe": "linear probe (frozen ImageNet backbone)", "finetune": "full fine-tune from the probe",
                "scratch": "from random weights (baseline)"}[stage]
        rows.append([stage + (" ✔ shipped" if stage == result.final else ""), what, str(len(run.history)),
                     str(run.best_epoch), _pct(best.get("val_top1")), f"{best.get('val_loss', float('nan')):.4f}",
                     *([_pct(run.test.get("test_top1"))] if result.split.test else [])])
    best = result.runs[result.final].best.get("val_top1", 0.0)
    text = [f"Model `{result.options.model}` with weights `{result.options.weights}`; LP-FT: the probe trains "
            "only the new head, then the whole network fine-tunes from it at a lower learning rate."]
    if "scratch" in result.runs:
        scratch = result.runs["scratch"].best.get("val_top1", 0.0)
        tests = [r.test.get("test_top1") for r in (result.runs[result.final], result.runs["scratch"])]
        on_test = f"; on the test images, {tests[0]:.2f}% vs {tests[1]:.2f}%" if None not in tests else ""
        shipped = "Pretrained + fine-tuned" if result.final == "finetune" else "Pretrained (the probe, shipped)"
        text.append(f"{shipped}: **{best:.2f}%** val top-1 vs **{scratch:.2f}%** from scratch with the "
                    f"same number of epochs (chance {100 / len(result.split.classes):.1f}%){on_test}.")
    image = plot_training(result, result.options.out / "training.png")
    text.append("Per-run curves and metrics: " + ", ".join(f"`{Path(r.run_dir) / 'curves.png'}`"
                                                          for r in result.runs.values()) + ".")
    chosen = ["test top-1 (not used to choose)"] if result.split.test else []
    header = ["run", "what", "epochs", "best epoch", "val top-1", "val loss", *chosen]
    return Section("Training", text, [Table(header, rows)], [image])


def evaluation_section(result: DemoResult) -> Section:
    from edgetl.evaluate import interval_text

    ev, _ = result.finished()
    shown = ev.per_class if len(ev.per_class) <= CLASS_ROWS else ev.weakest(CLASS_ROWS)
    rows = [[c.name, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support)] for c in shown]
    top5 = f", top-5 {ev.top5:.2f}%" if ev.top5 is not None else ""
    text = [f"`edgetl eval` of `{result.final_run}` on {ev.images} {_judged_on_words(result)}: "
            f"top-1 **{ev.top1:.2f}%**{interval_text(ev.top1_ci)}{top5}."]
    if ev.macro:
        text.append(f"Macro over the {ev.macro['classes']} classes with images: recall (balanced accuracy) "
                    f"{ev.macro['recall']:.3f}, F1 {ev.macro['f1']:.3f}.")
    if len(shown) < len(ev.per_class):
        text.append(f"The table lists the {len(shown)} weakest classes (lowest F1); `eval/eval.json` has all.")
    text += calibration_sentences(ev, result.runs[result.final].best)
    if ev.worst:
        text.append("Most confident mistakes: " + "; ".join(
            f"`{Path(m.path).name}` {m.true} → {m.predicted} ({m.confidence:.2f})" for m in ev.worst[:5]))
    return Section("Evaluation", text, [Table(["class", "precision", "recall", "F1", "support"], rows)],
                   [result.options.out / "eval" / "confusion.png", result.options.out / "eval" / "reliability.png"])


def calibration_sentences(ev: EvalReport, best: dict[str, Any]) -> list[str]:
    """How true the probabilities are: training's temperature fit (its best epoch), then what eval saw."""
    from edgetl.calibration import calibration_note
    from edgetl.train.outputs import calibration_line

    out = [f"Training: {calibration_line(best)}."] if "temperature" in best else []
    if ev.calibration:
        cal = ev.calibration
        out.append(f"Probabilities (as `edgetl predict` states them): mean top-1 {cal['mean_confidence']:.3f} against "
                   f"accuracy {cal['accuracy']:.3f}, ECE {cal['ece']:.3f}.")
        note = calibration_note(cal, cal.get("temperature", 1.0))
        out += [f"Note: {note}."] if note else []
    return out


def artifacts_section(result: DemoResult) -> Section:
    _, report = result.finished()
    parity = {Path(c.artifact): c for c in report.candidates}
    ref_acc = report.candidates[0].stats.ref_accuracy if report.candidates else None
    rows = [[f"`{result.final_run.name}` (PyTorch)", "fp32", "-", _pct(ref_acc), "-", "-", "-", "reference"]]
    for path in result.artifacts:
        c = parity[path]
        s = c.stats
        target = c.runner.get("int8_target")
        precision = c.runner["precision"] + (f" ({target})" if target else "")
        rows.append([f"`{path.relative_to(result.options.out)}`", precision,
                     f"{path.stat().st_size / 2**20:.1f}", _pct(s.cand_accuracy),
                     f"{s.accuracy_drop:+.2f}" if s.accuracy_drop is not None else "-", f"{s.top1_agreement:.2%}",
                     f"{s.max_abs_diff:.2e}", "PASS" if c.passed else "FAIL: " + "; ".join(c.fails)])
    text = [f"`edgetl parity` on all {report.images} {_judged_on_words(result)}, each artifact with the preprocessing "
            "from its own metadata. INT8 for TensorRT is judged with ONNX Runtime graph optimisation off (Q/DQ as "
            "float fake-quant, TensorRT's numerics); INT8 for the CPU with ONNX Runtime's fused int8 kernels.",
            "Verdict: **" + ("all artifacts pass their gates" if result.passed else "a gate FAILED") + "**."]
    header = ["artifact", "precision", "MB", f"{result.judged_on.name} top-1", "drop (pts)", "top-1 agreement",
              "max abs Δ logit", "gate"]
    return Section("Artifacts and parity", text, [Table(header, rows)])


def bench_warnings(doc: dict[str, Any]) -> list[str]:
    """The benchmark's warnings (not its notes: the demo times each batch for a second on purpose)."""
    from edgetl.bench.report import warnings

    return [line for line in warnings(doc) if line.startswith("warning:")]


def bench_section(result: DemoResult) -> Section:
    from edgetl.bench.report import COLUMNS, table_rows, write_plot

    doc = result.bench
    plot = result.options.out / "bench.png"
    write_plot(doc, plot)
    host = doc["host"]
    text = [f"`edgetl bench` on {host_label(host)}: all artifacts measured "
            "interleaved in one process; speed-up is throughput over the PyTorch model at the same batch size."]
    if any("int8/tensorrt" in r["label"] for r in doc["results"]) and host["gpu"] is None:
        text.append("The TensorRT INT8 model (symmetric S8 Q/DQ) is timed here on ONNX Runtime's CPU kernels for "
                    "reference only: it is made for TensorRT, and the CPU INT8 model is the one to deploy on a CPU.")
    text += [f"**{line}**" for line in bench_warnings(doc)]  # a busy host, disturbed timings: before the figures
    return Section("Benchmark", text, [Table(list(COLUMNS), table_rows(doc["results"]))], [plot])


def commands(result: DemoResult) -> list[str]:
    """The CLI commands that redo each step of this demo, from the files it wrote."""
    o = result.options
    out, run, val, judged = o.out, result.final_run, result.split.folders["val"], result.judged_on
    lines = ["# train again, into new folders (each run's resolved settings are in its config.yaml)"]
    lines += [shlex.join(["edgetl", "train", "--config", str(Path(r.run_dir) / "config.yaml"), "--out",
                          str(out / "rerun" / Path(r.run_dir).name)]) for r in result.runs.values()]
    lines += ["# evaluate", f"edgetl eval {run} --data {judged} --out {out / 'eval'}", "# export with parity"]
    for m, folder in zip(result.manifests, (out / "export", out / "export" / "cpu"), strict=False):
        flags = ["--fp16"] if any(a.precision == "fp16" for a in m.artifacts) else []
        int8 = next((a for a in m.artifacts if a.precision == "int8"), None)
        if int8 is not None:
            flags += ["--int8", "--int8-target", int8.details["int8"]["target"], "--calib-data",
                      str(result.split.folders["train"]), "--calib-size", str(o.calib_size), "--max-accuracy-drop",
                      str(o.int8_budget)]
        lines.append(shlex.join(["edgetl", "export", str(run), "--out", str(folder), *flags, "--val-data", str(val),
                                 "--parity-size", str(m.parity_data["n"])]))  # every val image, as the demo
    files = [str(p) for p in result.artifacts]
    lines += ["# parity and benchmark",
              shlex.join(["edgetl", "parity", str(run), *files, "--data", str(judged), "--json",
                          str(out / "parity.json")]),
              shlex.join(["edgetl", "bench", str(run), *files, "--batch", ",".join(map(str, o.bench_batches)),
                          "--duration", str(o.bench_seconds), "--json", str(out / "bench.json"), "--plot",
                          str(out / "bench.png")])]
    return lines


def deploy_section(result: DemoResult) -> Section:
    build = result.manifests[0].engine_build
    status = build.get("status", "not requested")
    text = [f"TensorRT engines: {status}. Engines are specific to the GPU and TensorRT version, so build them on the "
            "target (Jetson or server) from the ONNX files and `manifest.json` in "
            f"`{result.options.out / 'export'}`, with edgetl or with TensorRT's own `trtexec`:"]
    code = [build.get("edgetl", ""), *build.get("trtexec", {}).values()]
    return Section("Deploy to TensorRT", text, code=[c for c in code if c])


def write_demo_report(result: DemoResult) -> tuple[Path, Path]:
    """Write parity.json, bench.json, report.md and report.html into the demo's out directory."""
    out = result.options.out
    atomic_write_json(out / "parity.json", result.finished()[1].to_dict())
    atomic_write_json(out / "bench.json", result.bench)
    result.commands = commands(result)
    seconds = ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
    summary = Section("Summary", [f"Finished in {seconds}. " +
                                  ("Every artifact passed parity." if result.passed else "**A parity gate failed.**")])
    sections = [summary, data_section(result), training_section(result), evaluation_section(result),
                artifacts_section(result), bench_section(result), deploy_section(result),
                Section("Reproduce", ["Each step of this report, as commands:"], code=result.commands)]
    return write_report(out, f"edgetl demo — {result.options.model}", sections)


def summary_rows(result: DemoResult) -> list[dict[str, Any]]:
    """One row per artifact for the console table: precision, top-1 on ``judged_on``, drop, verdict."""
    return [{"artifact": str(Path(c.artifact).relative_to(result.options.out)), "precision": c.runner["precision"],
             "top1": c.stats.cand_accuracy, "drop": c.stats.accuracy_drop, "passed": c.passed}
            for c in result.finished()[1].candidates]
