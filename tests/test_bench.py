"""Benchmark harness: statistics, schema, interleaved side-by-side runs on real models, reports, CLI."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import HYMENOPTERA, requires_gpu

from edgetl.bench.harness import BenchConfig, BenchTarget, bench_targets
from edgetl.bench.report import (
    markdown,
    merge_documents,
    plot_figure,
    table_rows,
    unstable,
    warnings,
    with_speedups,
    write_plot,
)
from edgetl.bench.schema import SCHEMA, make_document, validate
from edgetl.bench.stats import latency_stats, throughput_ips
from edgetl.card import ModelCard, Preprocess
from edgetl.cli import main
from edgetl.errors import EdgetlError
from edgetl.runtime import load
from edgetl.runtime.base import Runner, RunnerInfo

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_stats_on_known_timings() -> None:
    times = list(range(1, 101))  # 1..100 ms
    s = latency_stats(times)
    assert s["mean"] == 50.5 and s["min"] == 1 and s["max"] == 100
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)
    assert throughput_ips(8, 4.0) == 2000.0
    with pytest.raises(ValueError):
        latency_stats([])


def _result(**kw: object) -> dict:
    r = {"model": "resnet50", "artifact": "m.onnx", "backend": "onnxruntime", "precision": "fp32", "device": "cpu",
         "provider": "CPUExecutionProvider", "mode": "compute", "batch": 8, "iters": 100, "warmup_iters": 5,
         "latency_ms": {"mean": 4.0, "min": 3.0, "p50": 3.9, "p90": 4.5, "p95": 4.8, "p99": 5.0, "max": 6.0},
         "throughput_ips": 2000.0, "peak_memory_mb": None}
    r.update(kw)
    return r


def test_schema_accepts_a_valid_document_and_names_bad_fields() -> None:
    doc = make_document([_result(), _result(backend="cpp-trt", device="cuda", provider=None, peak_memory_mb=812.5)])
    assert doc["schema"] == SCHEMA and validate(json.loads(json.dumps(doc))) == doc
    bad_cases = [
        ({"schema": "edgetl.bench/0"}, "'schema' is 'edgetl.bench/0'"),
        ({"timestamp": "yesterday"}, "not ISO 8601"),
        ({"host": {"cpu": "x"}}, "'host' needs"),
    ]
    for patch, pattern in bad_cases:
        with pytest.raises(EdgetlError, match=pattern):
            validate({**doc, **patch})
    for field, value, pattern in [("backend", "tflite", "expected one of torch"), ("batch", 0, "'batch'"),
                                  ("latency_ms", {"mean": 1.0}, "latency_ms.min"),
                                  ("latency_ms", {"mean": 4.0, "min": 3.0, "p50": 3.9, "p90": 4.5, "p95": 4.8,
                                                  "p99": 5.0, "max": 4.0}, "not ordered"),
                                  ("throughput_ips", "fast", "type str")]:
        broken = copy.deepcopy(doc)
        broken["results"][0][field] = value
        with pytest.raises(EdgetlError, match=pattern):
            validate(broken, source="x.json")
    broken = copy.deepcopy(doc)
    del broken["results"][1]["mode"]
    with pytest.raises(EdgetlError, match=r"results\[1\]: missing 'mode'"):
        validate(broken)


def test_speedup_is_relative_to_the_first_artifact_per_batch() -> None:
    rs = with_speedups([_result(batch=1, throughput_ips=100.0), _result(artifact="b", batch=1, throughput_ips=250.0),
                        _result(batch=8, throughput_ips=400.0), _result(artifact="b", batch=8, throughput_ips=200.0)])
    assert [r["speedup"] for r in rs] == [1.0, 2.5, 1.0, 0.5]


def test_disturbed_timings_are_marked() -> None:
    steady = _result()
    shaky = _result(artifact="b", latency_ms={"mean": 40.0, "min": 3.0, "p50": 4.0, "p90": 9.0, "p95": 50.0,
                                              "p99": 300.0, "max": 400.0})
    doc = make_document([steady, shaky])
    rows = {row[0]: row for row in table_rows(doc["results"])}
    assert rows["m.onnx [onnxruntime/fp32]"][8] == "5.000" and rows["b [onnxruntime/fp32]"][8] == "300.000*"
    assert "* p99 over 2x p50" in markdown(doc)
    assert "* p99" not in markdown(make_document([steady]))
    edge = {"p50": 4.0, "p99": 8.0}  # "over 2x": exactly twice is not marked, a hair more is
    assert not unstable({"latency_ms": edge}) and unstable({"latency_ms": {**edge, "p99": 8.01}})


def test_a_busy_host_is_named_before_the_figures_are_trusted() -> None:
    from edgetl.bench.report import warnings

    def doc_at(load: float, device: str = "cpu") -> dict[str, Any]:
        doc = make_document([_result(device=device)], load_before=load)
        doc["host"]["cores"] = 2
        return doc

    quiet, busy = doc_at(0.4), doc_at(6.4)
    assert set(busy["host"]["load_average"]) == {"before", "after"}
    assert not any("busy" in w for w in warnings(quiet))
    said = [w for w in warnings(busy) if "busy" in w]
    assert said == [said[0]] and "load average 6.4 on 2 cores" in said[0] and "--threads 1" in said[0]
    assert not any("busy" in w for w in warnings(doc_at(6.4, device="cuda")))  # GPU figures: not this warning
    assert "load_average" not in make_document([_result()])["host"]  # documents that did not measure it
    from edgetl.demo_report import bench_warnings

    thin = doc_at(6.4)
    thin["results"][0]["iters"] = 20  # the demo times a second per batch on purpose: its report keeps warnings only
    assert any(w.startswith("note:") for w in warnings(thin)) and bench_warnings(thin) == said


def test_the_cpu_other_work_took_while_timing_decides_over_a_trailing_load_average() -> None:
    """A run just before leaves a 1-minute load average high for a minute: what other processes took while the
    timings ran (/proc/stat less this process's own CPU time) is what says whether the figures were disturbed."""
    from edgetl.bench.report import warnings
    from edgetl.bench.schema import cpu_clock, other_cpu_share

    def doc_with(other: float, load: float = 6.4) -> dict[str, Any]:
        doc = make_document([_result()], load_before=load, other_cpu=other)
        doc["host"]["cores"] = 2
        return doc

    assert not any("busy" in w for w in warnings(doc_with(0.05)))  # quiet while timing, whatever came before
    said = [w for w in warnings(doc_with(0.6)) if "busy" in w]
    assert len(said) == 1 and "other processes kept 60% of the 2 cores busy while the timings ran" in said[0]
    assert other_cpu_share((10.0, 4.0, 2), (13.0, 5.0, 2), 2.0) == 0.5  # 3 s busy, 1 s of it ours, on 2 CPUs
    assert other_cpu_share((10.0, 4.0, 2), (10.5, 5.0, 2), 2.0) == 0.0  # tick rounding: never below 0
    assert other_cpu_share(None, (1.0, 1.0, 2), 1.0) is None
    start = cpu_clock()
    if start is None:
        pytest.skip("no /proc/stat on this OS")
    while (now := cpu_clock()) is not None and now[1] - start[1] < 0.2:  # spin until 0.2 s of our own CPU
        sum(range(10_000))
    assert now is not None and now[0] - start[0] >= now[1] - start[1] - 0.03  # our CPUs' busy time holds ours


def test_a_tensorrt_int8_timed_on_a_cpu_says_what_it_is_for() -> None:
    """On this CPU the TensorRT-target INT8 runs at 0.3x FP32 while the CPU target's runs at 2x: a table that
    shows it without a word would read as "INT8 is slow"."""
    from edgetl.bench.report import warnings

    def said(**kw: Any) -> bool:
        doc = make_document([_result(precision="int8", label="model.int8.onnx [onnxruntime/int8/tensorrt]", **kw)])
        return any("--int8-target cpu" in w for w in warnings(doc))

    assert said(options={"int8_target": "tensorrt"})
    assert not said(options={"int8_target": "cpu"}) and not said(options={})
    assert not said(options={"int8_target": "tensorrt"}, device="cuda", provider="TensorrtExecutionProvider")


def test_merged_documents_keep_the_busiest_runs_load(tmp_path: Path) -> None:
    from edgetl.bench.report import warnings

    paths = [tmp_path / "quiet.json", tmp_path / "busy.json"]
    for path, average in zip(paths, (0.2, 6.4), strict=True):
        doc = make_document([_result()], load_before=average)
        doc["host"]["cores"] = 2
        path.write_text(json.dumps(doc))
    merged = merge_documents(paths)
    assert merged["host"]["load_average"]["before"] == 6.4 and any("host was busy" in w for w in warnings(merged))



class _Clock(Runner):
    """A runner whose timer reports set times: ``cold`` ms for its first ``n_cold`` timed calls, then ``warm``.

    The harness's bookkeeping (what is warm-up, what is timed, who runs in which round) is then exact to check.
    """

    def __init__(self, cold: float, n_cold: int, warm: float) -> None:
        self.card = ModelCard("clock", ["a", "b"], Preprocess((3, 8, 8)))
        self.info = RunnerInfo("onnxruntime", "fp32", "cpu")
        self.cold, self.n_cold, self.warm, self.calls = cold, n_cold, warm, 0

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), 2), np.float32)

    def time_calls(self, fn: Callable[[], object], n: int) -> list[float]:
        out = []
        for _ in range(n):
            fn()
            out.append(self.cold if self.calls < self.n_cold else self.warm)
            self.calls += 1
        return out


def test_warm_up_calls_stay_out_of_the_figures() -> None:
    target = BenchTarget("a", _Clock(cold=100.0, n_cold=3, warm=1.0), "a")
    (r,) = bench_targets([target], BenchConfig(iters=10, warmup_iters=3, warmup_s=0.0, settle_s=0.0), progress=False)
    assert r["iters"] == 10 and r["warmup_iters"] == 3 and r["latency_ms"]["max"] == 1.0


def test_with_a_duration_every_artifact_runs_in_every_round_until_all_are_done() -> None:
    """a spends 10 ms a round (its warm-up said 10 ms a call, then it runs at 1 ms), b 100 ms: a needs 20 rounds
    to fill 0.2 s and b only 2, but b keeps running beside a, so both see the same machine states."""
    a = BenchTarget("a", _Clock(cold=10.0, n_cold=5, warm=1.0), "a")
    b = BenchTarget("b", _Clock(cold=10.0, n_cold=5, warm=10.0), "b")
    config = BenchConfig(duration_s=0.2, warmup_iters=5, warmup_s=0.0, settle_s=0.0, round_s=0.1)
    ra, rb = bench_targets([a, b], config, progress=False)
    assert ra["rounds"] == rb["rounds"] == 20
    assert ra["iters"] == rb["iters"] == 10 * 20  # chunks of 10 calls (0.1 s at the warm-up's 10 ms) each round

def test_interleaved_side_by_side_on_real_models(tiny_run_dir: Path, tiny_onnx: Path) -> None:
    config = BenchConfig(batches=(1, 4), iters=12, warmup_iters=2, round_s=0.01)
    with load(tiny_run_dir, device="cpu") as torch_runner, load(tiny_onnx, device="cpu") as ort_runner:
        targets = [BenchTarget("torch", torch_runner, str(tiny_run_dir)),
                   BenchTarget("ort", ort_runner, str(tiny_onnx))]
        results = bench_targets(targets, config, progress=False)
    assert [(r["label"], r["batch"]) for r in results] == [("torch", 1), ("ort", 1), ("torch", 4), ("ort", 4)]
    for r in results:
        assert r["iters"] == 12 and r["warmup_iters"] >= 2  # --iters alone means exactly that many timed calls
        assert r["rounds"] > 1  # chunks of ~10 ms: both artifacts alternated over several rounds
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
        assert r["throughput_ips"] == pytest.approx(r["batch"] * 1000 / lat["mean"])
        assert r["device"] == "cpu" and r["peak_memory_mb"] is None and r["timer"] == "perf_counter_ns"
    assert results[1]["provider"] == "CPUExecutionProvider" and results[0]["backend"] == "torch"
    doc = make_document(results)
    table = markdown(doc)
    assert table.count("\n| ") == 5 and "1.00x" in table  # header + 4 rows; baseline 1.00x



def test_an_artifact_whose_precision_is_not_recorded_is_reported_as_unknown(tiny_onnx: Path) -> None:
    """As an engine whose <engine>.json was lost (TensorRT does not store precision): never labelled 'mixed'."""
    with load(tiny_onnx, device="cpu") as runner:
        runner.info.precision = "unknown"
        results = bench_targets([BenchTarget("engine", runner, str(tiny_onnx))],
                                BenchConfig(batches=(2,), iters=3, warmup_iters=1), progress=False)
    assert results[0]["precision"] == "unknown"
    doc = validate(make_document(results))
    assert any("precision not recorded for" in w and "<engine>.json" in w for w in warnings(doc))

def test_e2e_mode_preprocesses_real_images(tiny_onnx: Path, hymenoptera: Path) -> None:
    from edgetl.data.images import load_rgb

    images = [load_rgb(p) for p in sorted((hymenoptera / "val" / "ants").glob("*.jpg"))[:3]]
    with load(tiny_onnx) as runner:
        compute = bench_targets([BenchTarget("ort", runner, str(tiny_onnx))],
                                BenchConfig(batches=(2,), iters=6, warmup_iters=1), progress=False)
        e2e = bench_targets([BenchTarget("ort", runner, str(tiny_onnx))],
                            BenchConfig(batches=(2,), mode="e2e", iters=6, warmup_iters=1), images=images,
                            progress=False)
    assert e2e[0]["mode"] == "e2e"
    # e2e decodes nothing but resizes 500x375-ish photos and normalises: it costs more than compute
    assert e2e[0]["latency_ms"]["p50"] > compute[0]["latency_ms"]["p50"]


def test_cli_bench_writes_json_md_plot_and_merges(tiny_run_dir: Path, tiny_onnx: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.json"
    rc = main(["bench", str(tiny_run_dir), str(tiny_onnx), "--batch", "1,2", "--iters", "8", "--warmup-iters", "1",
               "--device", "cpu", "--threads", "1", "--json", str(out), "--md", str(tmp_path / "b.md"),
               "--plot", str(tmp_path / "b.png"),
               "--no-progress"])
    assert rc == 0
    doc = validate(json.loads(out.read_text()))
    assert len(doc["results"]) == 4 and {r["backend"] for r in doc["results"]} == {"torch", "onnxruntime"}
    torch_rows = [r for r in doc["results"] if r["backend"] == "torch"]
    assert all(r["options"]["malloc"].startswith("freed memory kept") for r in torch_rows)  # glibc here
    ort_rows = [r for r in doc["results"] if r["backend"] == "onnxruntime"]
    assert all(r["options"]["spinning"] is True for r in ort_rows)  # ORT's defaults, as in a user's plain loop
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "speed-up" in (tmp_path / "b.md").read_text()
    assert "PyTorch on the CPU ran with freed memory kept" in (tmp_path / "b.md").read_text()  # said, not only JSON
    assert 0.0 <= doc["host"]["other_cpu"] <= 1.0  # measured while the timings ran
    printed = capsys.readouterr().out
    assert "model.onnx" in printed and "1.00x" in printed
    plain = tmp_path / "plain.json"  # as a user's own loop runs: the allocator left alone, and nothing said of it
    assert main(["bench", str(tiny_run_dir), "--iters", "4", "--warmup-iters", "1", "--device", "cpu",
                 "--no-keep-freed-memory", "--json", str(plain), "--md", str(tmp_path / "plain.md"),
                 "--no-progress"]) == 0
    assert "malloc" not in json.loads(plain.read_text())["results"][0]["options"]
    assert "freed memory kept" not in (tmp_path / "plain.md").read_text()

    cpp = make_document([_result(backend="cpp-aoti", artifact="model.pt2", batch=1)])
    (tmp_path / "cpp.json").write_text(json.dumps(cpp))
    merged = merge_documents([out, tmp_path / "cpp.json"])
    assert len(merged["results"]) == 5 and merged["merged_from"][1].endswith("cpp.json")
    # rows name their file; speed-ups stay within one file (one run), and the footnote says so
    assert merged["results"][-1]["label"].endswith("(cpp.json)")
    assert [r["speedup"] for r in with_speedups(merged["results"])][-1] == 1.0
    assert "not compared" in markdown(merged) and "interleaved in one process" not in markdown(merged)
    write_plot(merged, tmp_path / "merged.png")
    fig = plot_figure(merged)  # plain tick labels: mathtext needs fonts a Debian/JetPack matplotlib cache lacks
    fig.canvas.draw()
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    assert "1" in labels and not any("$" in label for label in labels), labels
    fig.clf()
    within = make_document([_result(batch=1), _result(batch=8)])  # latencies within one decade (2.5 to 20 ms)
    within["results"][0]["latency_ms"]["mean"], within["results"][1]["latency_ms"]["mean"] = 2.5, 19.0
    ax = plot_figure(within).axes[0]
    ax.figure.canvas.draw()
    low, high = ax.get_ylim()
    shown = [t.get_text() for t, y in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True) if low <= y <= high]
    assert shown == ["5", "10", "20"], shown  # not "10" alone
    assert main(["bench", "--merge", str(out), str(tmp_path / "cpp.json"), "--json", str(tmp_path / "m.json")]) == 0
    assert len(json.loads((tmp_path / "m.json").read_text())["results"]) == 5


def test_cli_bench_errors(tmp_path: Path, tiny_onnx: Path, tiny_run_dir: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path / "nope.onnx")]) == 2
    assert "artifact not found" in capsys.readouterr().err
    assert main(["bench", str(tiny_onnx), "--provider", "tensorrt"]) == 2
    assert "not available here; available:" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other"}))
    assert main(["bench", "--merge", str(tmp_path / "bad.json")]) == 2
    assert "expected 'edgetl.bench/1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", str(tiny_onnx), "--batch", "0"])
    with pytest.raises(SystemExit):
        main(["bench", str(tiny_onnx), "--mode", "fast"])
    for flag, path, why in (("--json", tmp_path, "is a folder"), ("--plot", tmp_path / "b.gif", "end the name in .png"),
                            ("--md", tiny_onnx / "b.md", "cannot write there (Not a directory)")):
        with pytest.raises(SystemExit):
            main(["bench", str(tiny_onnx), flag, str(path)])
        assert why in capsys.readouterr().err  # refused before anything is measured
    assert main(["bench", str(tiny_onnx), "--data", str(tmp_path)]) == 2
    assert "--data feeds --mode e2e" in capsys.readouterr().err
    assert main(["bench", str(tiny_run_dir), "--provider", "cpu"]) == 2
    assert "--provider cpu applies to .onnx artifacts and none was given" in capsys.readouterr().err


def test_static_batches_are_reported_as_they_run(tiny_run_dir: Path, tmp_path: Path) -> None:
    from edgetl.export.onnx import onnx_from_checkpoint

    static = onnx_from_checkpoint(tiny_run_dir, tmp_path / "static4.onnx", static_batch=4)
    out, plot = tmp_path / "s.json", tmp_path / "s.svg"
    assert main(["bench", str(static), "--batch", "1,4,4,6", "--iters", "3", "--warmup-iters", "1",
                 "--no-progress", "--json", str(out), "--plot", str(plot)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["batch"] for r in rows] == [1, 4, 6]  # a size given twice is measured once
    assert [r["options"].get("runs_as") for r in rows] == ["padded to 4", None, "2 calls of 4, padded to 8"]
    assert plot.read_text().lstrip().startswith("<?xml")  # the suffix picks the format


def test_trtexec_absent_is_a_clear_error(tiny_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    if shutil.which("trtexec"):
        pytest.skip("trtexec present")
    assert main(["bench", str(tiny_onnx), "--trtexec", "--iters", "2"]) == 2
    assert "trtexec not found on PATH" in capsys.readouterr().err


def test_trtexec_output_parsing() -> None:
    from edgetl.bench.trtexec import parse_trtexec

    text = """[I] === Performance summary ===
[I] Throughput: 2210.48 qps
[I] Latency: min = 0.52 ms, max = 1.2 ms, mean = 0.61 ms, median = 0.6 ms, percentile(90%) = 0.63 ms
[I] GPU Compute Time: min = 0.431 ms, max = 0.9 ms, mean = 0.4502 ms, median = 0.449 ms, \
percentile(90%) = 0.455 ms, percentile(95%) = 0.46 ms, percentile(99%) = 0.48 ms
"""  # the backslash joins the two halves: trtexec prints it as one line
    got = parse_trtexec(text)
    assert got["qps"] == 2210.48 and got["mean"] == 0.4502 and got["p99"] == 0.48 and got["min"] == 0.431
    with pytest.raises(EdgetlError, match="could not read trtexec"):
        parse_trtexec("[E] Engine deserialization failed")


def test_trtexec_times_a_dla_engine_on_its_core() -> None:
    from edgetl.bench.trtexec import timing_command

    gpu = timing_command("trtexec", "m.engine", "input", (8, 3, 224, 224), 3.0, None)
    assert "--shapes=input:8x3x224x224" in gpu and "--noDataTransfers" in gpu
    assert not [a for a in gpu if a.startswith("--useDLACore")]
    assert timing_command("trtexec", "m.engine", "input", (1, 3, 224, 224), 3.0, 1)[-1] == "--useDLACore=1"


def test_host_records_the_cpu_features_that_decide_int8_speed(tmp_path: Path) -> None:
    """The same INT8 file runs 5.5x or 3.8x faster than PyTorch depending on VNNI: results say which CPU had what."""
    from edgetl.bench.schema import ISA_FLAGS, host_info, host_label

    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags = set(line.split(":", 1)[1].split())
            break
    host = host_info()
    assert host["isa"] == [f for f in ISA_FLAGS if f in flags]
    assert all(f in host_label(host) for f in host["isa"]) and str(host["cores"]) in host_label(host)
    doc = make_document([_result()])
    other = copy.deepcopy(doc)
    other["host"]["isa"] = ["avx2", "fma", "avx512f", "avx512_vnni"] if "avx512_vnni" not in host["isa"] else []
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for p, d in zip(paths, (doc, other), strict=True):
        p.write_text(json.dumps(d))
    assert "different hosts" in merge_documents(paths)["warning"]
    del other["host"]["isa"]  # a file from before the field is not called different
    paths[1].write_text(json.dumps(other))
    assert "warning" not in merge_documents(paths)


def test_json_roundtrip_keeps_numbers(tmp_path: Path) -> None:
    doc = make_document([_result()])
    assert np.isclose(validate(json.loads(json.dumps(doc)))["results"][0]["throughput_ips"], 2000.0)


def test_gpu_suite_refuses_without_cuda_and_has_help() -> None:
    import subprocess
    import sys

    from conftest import has_cuda

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"
    helped = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--dry-run" in helped.stdout
    if has_cuda():
        pytest.skip("a CUDA GPU is present; the refusal only applies without one")
    proc = subprocess.run([sys.executable, str(script), "--models", "resnet50"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "needs a CUDA GPU" in proc.stderr and "--dry-run" in proc.stderr


def test_cli_e2e_on_real_photos(tiny_onnx: Path, hymenoptera: Path, tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    assert main(["bench", str(tiny_onnx), "--mode", "e2e", "--data", str(hymenoptera / "val" / "ants"),
                 "--batch", "2", "--iters", "4", "--warmup-iters", "1", "--json", str(out), "--no-progress"]) == 0
    r = validate(json.loads(out.read_text()))["results"][0]
    assert (r["mode"], r["batch"], r["iters"], r["timer"]) == ("e2e", 2, 4, "perf_counter_ns")


def test_ort_sessions_keep_onnxruntime_defaults_unless_told(tiny_onnx: Path) -> None:
    """Benchmarked sessions spin like a user's own (interleaving relies on settle_s instead); ``spinning=False``
    is there for deployments that run several models in one process."""
    entry = "session.intra_op.allow_spinning"
    with load(tiny_onnx, device="cpu", spinning=False) as quiet, load(tiny_onnx, device="cpu") as default:
        assert quiet.session.get_session_options().get_session_config_entry(entry) == "0"
        with pytest.raises(RuntimeError):  # never set: ORT's default (spinning on)
            default.session.get_session_options().get_session_config_entry(entry)
        assert (quiet.info.details["spinning"], default.info.details["spinning"]) == (False, True)



@requires_gpu
@pytest.mark.gpu
def test_cli_bench_on_cuda_uses_events_and_reports_each_device(tiny_run_dir: Path, tiny_onnx: Path,
                                                                tmp_path: Path) -> None:
    """PyTorch FP16 on the GPU next to ONNX Runtime: each row says where it really ran and how it was timed."""
    import onnxruntime as ort

    out = tmp_path / "gpu.json"
    assert main(["bench", str(tiny_run_dir), str(tiny_onnx), "--batch", "1,4", "--iters", "20", "--warmup-iters", "3",
                 "--half", "--channels-last", "--cuda-graph", "--json", str(out), "--no-progress"]) == 0
    doc = validate(json.loads(out.read_text()))
    assert doc["host"]["gpu"]
    torch_rows = [r for r in doc["results"] if r["backend"] == "torch"]
    assert len(torch_rows) == 2 and all(r["device"] == "cuda" and r["precision"] == "fp16" for r in torch_rows)
    assert all(r["timer"] == "cuda-events" for r in torch_rows)
    assert all(r["peak_memory_mb"] is None for r in torch_rows)  # a CUDA graph's pool cannot be attributed
    assert all("malloc" not in r["options"] for r in doc["results"])  # allocator tuning is for PyTorch on the CPU
    assert all("tf32" not in r["options"] for r in torch_rows)  # FP16: TF32 has no say
    ort_rows = [r for r in doc["results"] if r["backend"] == "onnxruntime"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():  # CPU-only onnxruntime: said, not hidden
        assert all(r["device"] == "cpu" and r["timer"] == "perf_counter_ns" for r in ort_rows)


def _gpu_suite() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"
    spec = importlib.util.spec_from_file_location("gpu_suite", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_suite_goal_leaves_out_variants_that_are_fast_because_wrong() -> None:
    suite = _gpu_suite()

    def row(label: str, ips: float) -> dict[str, Any]:
        return {"label": label, "batch": 256, "throughput_ips": ips}

    doc = {"results": [row("torch-eager-fp32", 100.0), row("torch-fp16-cl-cudagraph", 900.0),
                       row("torch-fp16-cl", 450.0), row("torch-eager-fp32-ieee", 50.0)],
           "fidelity": {"variants": [{"variant": "torch-fp16-cl-cudagraph", "ok": False},
                                     {"variant": "torch-fp16-cl", "ok": True}]}}
    line = suite.goal_line(doc)
    assert "best = torch-fp16-cl 450" in line and "4.50x" in line and "(goal >= 4x: MET)" in line
    strict = suite.goal_line(doc, "torch-eager-fp32-ieee")  # the other baseline is never the "best"
    assert "best = torch-fp16-cl 450" in strict and "9.00x" in strict
    doc["results"][2]["throughput_ips"] = 390.0
    assert "(goal >= 4x: NOT MET)" in suite.goal_line(doc)
    doc["fidelity"]["variants"][1]["ok"] = False
    assert "goal not measured" in suite.goal_line(doc)


def test_gpu_suite_refuses_a_misspelt_variant() -> None:
    suite = _gpu_suite()
    assert suite.parse_args(["--variants", "torch-fp16-cl,trt-int8"]).variants == "torch-fp16-cl,trt-int8"
    with pytest.raises(SystemExit):
        suite.parse_args(["--variants", "torch-compiled-fp16,trt-int8"])


def test_gpu_suite_measures_the_goal_first() -> None:
    suite = _gpu_suite()
    models, batches = suite.goal_first(["efficientnet_b0", "resnet50", "tf_efficientnet_lite0"], [1, 8, 32, 128, 256])
    assert models == ["resnet50", "efficientnet_b0", "tf_efficientnet_lite0"] and batches == [256, 1, 8, 32, 128]


def test_gpu_suite_budget_judges_a_new_model_by_the_cost_of_opening_one() -> None:
    """A model's first unit pays for building and compiling it: a new model is judged by that, not by the last
    (cheap) batch, so the budget does not start a model it cannot measure (the H100 run built one for nothing)."""
    import time

    budget = _gpu_suite().Budget(10.0)
    now = time.monotonic()
    budget.unit(now - 8.0, opening=True)
    budget.unit(now - 0.1)
    budget.start = now - 5.0  # 5 s spent: a 0.1 s batch fits, an 8 s model does not
    assert budget.allows() and not budget.allows(opening=True)


def test_gpu_suite_dry_run_checks_variants_and_keeps_within_its_budget(tmp_path: Path) -> None:
    """Every variant is checked against eager FP32 on real photos; a budget spent after the first (model, batch)
    leaves that one written and the rest listed as not measured."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"
    proc = subprocess.run([sys.executable, str(script), "--dry-run", "--models", "test_resnet,test_efficientnet",
                           "--batch", "1,2", "--budget-s", "0.001", "--out", str(tmp_path), "--work",
                           str(tmp_path / "work"), "--iters", "5", "--duration", "0.1"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EDGETL_HYMENOPTERA": str(HYMENOPTERA)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = validate(json.loads((tmp_path / "test_resnet.json").read_text()))
    (ort,) = doc["fidelity"]["variants"]
    assert ort["variant"] == "ort-cpu-fp32" and ort["ok"] and ort["rel_error"] < 1e-4 and ort["images"] == 32
    photos = (HYMENOPTERA / "train").is_dir()  # each result says which images it saw
    assert re.match(r"\d+ real photos \(" if photos else r"64 synthetic images", doc["images"]), doc["images"]
    assert doc["fidelity"]["images"] == doc["images"]
    assert set(doc["build_seconds"]) == {"torch-eager-fp32", "ort-cpu-fp32"}  # what each costs a lease
    assert {r["batch"] for r in doc["results"]} == {2} and doc["batches_left_out"] == [1]
    assert not (tmp_path / "test_efficientnet.json").exists()
    summary = (tmp_path / "summary.md").read_text()
    assert "fidelity ort-cpu-fp32: rel error" in summary and "(finished)" in summary
    assert "not measured (time budget): batch 1" in summary
    assert "## test_efficientnet\n\n- not measured (time budget)" in summary
