"""Reports from ``edgetl.bench/1`` documents: a side-by-side rich table, Markdown, a PNG plot, merging files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgetl.bench.schema import SCHEMA, host_label, validate
from edgetl.io import atomic_path, atomic_write_text, read_json

COLUMNS = ("artifact", "backend", "precision", "device", "mode", "batch", "mean ms", "p50 ms", "p99 ms",
           "img/s", "speed-up", "peak MB", "iters")


def label_of(r: dict[str, Any]) -> str:
    if r.get("label"):
        return str(r["label"])
    return f"{Path(r['artifact']).name} [{r['backend']}/{r['precision']}]"


UNSTABLE_RATIO = 2.0  # p99 / p50 above this: the timings were disturbed (a busy machine, too many threads)


def unstable(r: dict[str, Any]) -> bool:
    lat = r["latency_ms"]
    return bool(lat["p99"] > UNSTABLE_RATIO * lat["p50"])


def with_speedups(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each result plus ``speedup``: throughput over the first artifact's at the same batch and mode
    (of the same file, for merged documents: separate runs are never compared)."""
    base: dict[tuple[str, int, str], float] = {}
    out = []
    for r in results:
        key = (str(r.get("source", "")), r["batch"], r["mode"])
        base.setdefault(key, r["throughput_ips"])
        out.append({**r, "speedup": r["throughput_ips"] / base[key] if base[key] else None})
    return out


def table_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    ordered = sorted(with_speedups(results), key=lambda r: (r["mode"], r["batch"]))
    for r in ordered:
        lat = r["latency_ms"]
        dev = r["device"] + (f" ({r['provider'].replace('ExecutionProvider', '')})" if r.get("provider") else "")
        runs_as = (r.get("options") or {}).get("runs_as")
        rows.append([label_of(r), r["backend"], r["precision"], dev, r["mode"],
                     str(r["batch"]) + (f" ({runs_as})" if runs_as else ""),
                     f"{lat['mean']:.3f}", f"{lat['p50']:.3f}", f"{lat['p99']:.3f}" + ("*" if unstable(r) else ""),
                     f"{r['throughput_ips']:.1f}",
                     f"{r['speedup']:.2f}x" if r.get("speedup") else "-",
                     f"{r['peak_memory_mb']:.0f}" if r.get("peak_memory_mb") is not None else "-", str(r["iters"])])
    return rows


def console() -> Any:
    """A rich console that does not squeeze tables to 80 columns when output goes to a file or pipe."""
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=180)


BUSY_SHARE = 0.5  # a load average over this share of the cores before timing: other work held them
BUSY_OTHER_CPU = 0.25  # other work took over this share of the CPUs while the timings ran


def busy_host(doc: dict[str, Any]) -> str | None:
    """Why CPU figures measured on a busy host mislead: from ``host.other_cpu`` (what other work took while the
    timings ran) where measured, else from ``host.load_average.before`` (which trails by a minute)."""
    host = doc.get("host") or {}
    if not any(r["device"] == "cpu" for r in doc["results"]):
        return None
    effect = ("so CPU figures are low, and a backend running more threads loses more (PyTorch's worst), which skews "
              "speed-ups; re-run on a quiet machine, or compare with --threads 1")
    other = host.get("other_cpu")
    if other is not None:
        if other <= BUSY_OTHER_CPU:
            return None
        return f"other processes kept {other:.0%} of the {host['cores']} cores busy while the timings ran, {effect}"
    before = (host.get("load_average") or {}).get("before")
    if before is None or before <= BUSY_SHARE * host.get("cores", 1):
        return None
    return (f"the host was busy before timing began (1-minute load average {before:g} on {host['cores']} cores): "
            f"other processes shared the cores, {effect}")


def warnings(doc: dict[str, Any]) -> list[str]:
    """What a reader must know before trusting the figures: a document's own warning, disturbed p99s, thin p99s."""
    out = [f"warning: {doc['warning']}"] if doc.get("warning") else []
    shaky = [f"{label_of(r)} batch {r['batch']}" for r in doc["results"] if unstable(r)]
    if shaky:
        out.append(f"warning: unstable timings (p99 > {UNSTABLE_RATIO:g}x p50) for {', '.join(shaky)}: the machine "
                   "was busy or ran more threads than it has free cores; re-run on a quiet machine or with "
                   "--threads N, and compare p50")
    busy = busy_host(doc)
    if busy:
        out.append(f"warning: {busy}")
    for_trt = sorted({label_of(r) for r in doc["results"] if r["device"] == "cpu" and r["precision"] == "int8"
                      and (r.get("options") or {}).get("int8_target") == "tensorrt"})
    if for_trt:
        out.append(f"note: {', '.join(for_trt)}: INT8 made for TensorRT (symmetric S8); ONNX Runtime on a CPU runs it "
                   "slower than FP32 and, with its fused kernels, in other numerics than TensorRT's (parity judges "
                   "it as TensorRT computes): for a CPU deployment export --int8-target cpu")
    unknown = sorted({r["artifact"] for r in doc["results"] if r["precision"] == "unknown"})
    if unknown:
        out.append(f"note: precision not recorded for {', '.join(unknown)} (TensorRT does not store it): keep the "
                   "<engine>.json `edgetl export` wrote beside each engine")
    few = sorted({r["iters"] for r in doc["results"] if r["iters"] < 100})
    if few:
        out.append(f"note: some p99 figures rest on only {few[0]} timed calls; use the default (>= 100 calls) or "
                   "--iters 100 or more for a stable p99")
    return out


def footnote(doc: dict[str, Any]) -> str:
    """What the speed-up column compares, and what a * on p99 means."""
    if doc.get("merged_from"):
        text = ("Speed-up: throughput over the first artifact of the same file at the same batch size; "
                "the merged files were measured in separate runs, so rows of different files are not compared.")
    else:
        text = ("Speed-up: throughput over the first artifact at the same batch size, all measured interleaved in one "
                "process.")
    if any(r.get("peak_memory_mb") is None for r in doc["results"]):
        text += (" peak MB: the device memory the model took (PyTorch on CUDA); - where no figure would be the "
                 "model's alone (CPU runs share one process's memory; other runtimes keep their own pools).")
    if any((r.get("options") or {}).get("malloc") and r["backend"] == "torch" for r in doc["results"]):
        text += (" PyTorch on the CPU ran with freed memory kept in the process (glibc mallopt, as jemalloc does): "
                 "a plain loop without it re-faults its activations on every call and is slower "
                 "(--no-keep-freed-memory times that).")
    if any(unstable(r) for r in doc["results"]):
        text += (f" * p99 over {UNSTABLE_RATIO:g}x p50: disturbed timings (a busy machine, or more threads than free "
                 "cores: try --threads); trust p50 over mean, speed-up and img/s there.")
    return text


def rich_table(doc: dict[str, Any]) -> Any:
    from rich.table import Table

    title = f"edgetl bench — {host_label(doc['host'])}"
    table = Table(title=title.replace("[", "\\["), caption=footnote(doc))
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("artifact", "backend", "device", "mode") else "right",
                         overflow="fold")
    from rich.markup import escape

    for row in table_rows(doc["results"]):
        table.add_row(*(escape(cell) for cell in row))
    return table


def markdown(doc: dict[str, Any]) -> str:
    host = doc["host"]
    lines = [f"# edgetl bench ({doc['timestamp']})", "",
             f"Host: {host['cpu']}, {host['cores']} cores{', ' + ' '.join(host['isa']) if host.get('isa') else ''}, "
             f"GPU: {host['gpu'] or 'none'}. "
             f"Versions: {', '.join(f'{k} {v}' for k, v in sorted(doc['versions'].items()))}.", "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if c == "artifact" else "---:" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(doc["results"])]
    lines += ["", footnote(doc) + " Latency: " + ("CUDA events (compute mode on GPU)" if host["gpu"] else
                                                   "host perf_counter_ns") + "; warm-up excluded.", ""]
    return "\n".join(lines)


def write_markdown(doc: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, markdown(doc))


def plot_figure(doc: dict[str, Any]) -> Any:
    """Mean latency and throughput vs batch size, one line per artifact, on log axes.

    Ticks are plain numbers (the batch sizes measured, latencies as 2, 5, 10 ms): matplotlib's default log
    labels are mathtext, which needs STIX fonts that a Debian/JetPack system matplotlib's font cache lacks.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[str, list[dict[str, Any]]] = {}
    for r in doc["results"]:
        series.setdefault(f"{label_of(r)} {r['mode']}", []).append(r)
    for name, rs in series.items():
        rs = sorted(rs, key=lambda r: r["batch"])
        batches = [r["batch"] for r in rs]
        ax_lat.plot(batches, [r["latency_ms"]["mean"] for r in rs], marker="o", label=name)
        ax_tp.plot(batches, [r["throughput_ips"] for r in rs], marker="o", label=name)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax, ylabel in ((ax_lat, "mean latency (ms)"), (ax_tp, "throughput (images/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["batch"] for r in doc["results"]}))
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    ax_lat.set_yscale("log")
    ax_lat.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # a range within a decade is labelled
    ax_lat.yaxis.set_major_formatter(plain)
    ax_lat.yaxis.set_minor_formatter(NullFormatter())
    ax_tp.legend(fontsize=7, loc="best")
    fig.suptitle(f"edgetl bench — {host_label(doc['host'])}", fontsize=10)
    fig.tight_layout()
    return fig


def write_plot(doc: dict[str, Any], path: str | Path) -> None:
    """``plot_figure`` saved as PNG, SVG or PDF by the suffix."""
    import matplotlib.pyplot as plt

    fig = plot_figure(doc)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".").lower() or "png", dpi=110)
    plt.close(fig)


def merge_documents(paths: Sequence[str | Path]) -> dict[str, Any]:
    """One document from several (e.g. Python and C++ runs): results concatenated in file order."""
    docs = [validate(read_json(p), source=str(p)) for p in paths]
    if not docs:
        raise ValueError("no files to merge")
    first = docs[0]
    results = [{**r, "source": str(p), "label": f"{label_of(r)} ({Path(p).name})"}
               for p, d in zip(paths, docs, strict=True) for r in d["results"]]
    loads = [d["host"]["load_average"] for d in docs if isinstance(d["host"].get("load_average"), dict)]
    host = {**first["host"], **({"load_average": max(loads, key=lambda la: la.get("before") or 0)} if loads else {})}
    others = [d["host"]["other_cpu"] for d in docs if d["host"].get("other_cpu") is not None]
    host.pop("other_cpu", None)
    if others:
        host["other_cpu"] = max(others)
    merged = {"schema": SCHEMA, "timestamp": first["timestamp"], "host": host,  # the busiest run's load
              "versions": first["versions"], "results": results, "merged_from": [str(p) for p in paths]}
    hosts = {(d["host"]["cpu"], d["host"]["gpu"]) for d in docs}
    isas = {tuple(d["host"]["isa"]) for d in docs if "isa" in d["host"]}  # files from before isa lack it
    if len(hosts) > 1 or len(isas) > 1:
        merged["warning"] = "merged files come from different hosts; speed-ups across them are not comparable"
    return validate(merged)
