"""The benchmark JSON schema ``edgetl.bench/1``, shared by ``edgetl bench`` and the C++ bench tool.

``validate`` checks a document by hand (no jsonschema dependency) and names the first bad field.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError
from edgetl.host import ISA_FLAGS, cpuinfo

SCHEMA = "edgetl.bench/1"
BACKENDS = ("torch", "onnxruntime", "tensorrt", "aoti", "cpp-trt", "cpp-aoti")
# "unknown": an engine whose exporter record (<engine>.json) is missing; TensorRT does not say
PRECISIONS = ("fp32", "fp16", "int8", "mixed", "unknown")
DEVICES = ("cpu", "cuda")
MODES = ("compute", "e2e")
LATENCY_KEYS = ("mean", "min", "p50", "p90", "p95", "p99", "max")

RESULT_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,), "artifact": (str,), "backend": (str,), "precision": (str,), "device": (str,),
    "provider": (str, type(None)), "mode": (str,), "batch": (int,), "iters": (int,), "warmup_iters": (int,),
    "latency_ms": (dict,), "throughput_ips": (int, float), "peak_memory_mb": (int, float, type(None)),
}
CHOICES = {"backend": BACKENDS, "precision": PRECISIONS, "device": DEVICES, "mode": MODES}


def _fail(where: str, message: str) -> EdgetlError:
    return EdgetlError(f"{where}: {message} (schema {SCHEMA})")


def validate(obj: Any, source: str = "benchmark JSON") -> dict[str, Any]:
    """Return ``obj`` when it is a valid ``edgetl.bench/1`` document; raise EdgetlError naming the bad field."""
    if not isinstance(obj, dict):
        raise _fail(source, f"top level must be an object, got {type(obj).__name__}")
    if obj.get("schema") != SCHEMA:
        raise _fail(source, f"'schema' is {obj.get('schema')!r}, expected {SCHEMA!r}")
    for key, kind in (("timestamp", str), ("host", dict), ("versions", dict), ("results", list)):
        if not isinstance(obj.get(key), kind):
            raise _fail(source, f"'{key}' missing or not a {kind.__name__}")
    host = obj["host"]
    if not isinstance(host.get("cpu"), str) or not isinstance(host.get("cores"), int) \
            or not isinstance(host.get("gpu"), (str, type(None))):
        raise _fail(source, "'host' needs cpu (str), cores (int) and gpu (str or null)")
    try:
        _dt.datetime.fromisoformat(obj["timestamp"].replace("Z", "+00:00"))
    except ValueError:
        raise _fail(source, f"'timestamp' {obj['timestamp']!r} is not ISO 8601") from None
    for i, result in enumerate(obj["results"]):
        _validate_result(result, f"{source}: results[{i}]")
    return obj


def _validate_result(r: Any, where: str) -> None:
    if not isinstance(r, dict):
        raise _fail(where, "each result must be an object")
    for key, kinds in RESULT_FIELDS.items():
        if key not in r:
            raise _fail(where, f"missing '{key}'")
        if not isinstance(r[key], kinds) or (isinstance(r[key], bool)):
            raise _fail(where, f"'{key}' has type {type(r[key]).__name__}")
    for key, choices in CHOICES.items():
        if r[key] not in choices:
            raise _fail(where, f"'{key}' is {r[key]!r}; expected one of {', '.join(choices)}")
    if r["batch"] < 1 or r["iters"] < 1 or r["warmup_iters"] < 0:
        raise _fail(where, "'batch' and 'iters' must be >= 1 and 'warmup_iters' >= 0")
    lat = r["latency_ms"]
    for key in LATENCY_KEYS:
        if not isinstance(lat.get(key), (int, float)) or isinstance(lat.get(key), bool) or lat[key] < 0:
            raise _fail(where, f"'latency_ms.{key}' missing or not a non-negative number")
    if not lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]:
        raise _fail(where, "'latency_ms' is not ordered (min <= p50 <= p99 <= max)")


def host_info(gpu: str | None = None) -> dict[str, Any]:
    """CPU model, core count, the CPU features of :data:`ISA_FLAGS` it has, and the GPU (None when unused)."""
    name, flags = cpuinfo()
    return {"cpu": name or platform.processor() or platform.machine(), "cores": os.cpu_count() or 1,
            "isa": [f for f in ISA_FLAGS if f in flags], "gpu": gpu}


def load_average() -> float | None:
    """The host's 1-minute load average (None where the OS has none): how many cores other work keeps busy."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_clock() -> tuple[float, float, int] | None:
    """(busy seconds of the CPUs this process may run on, this process's own CPU seconds, how many CPUs those
    are), from ``/proc/stat`` and ``getrusage``; None off Linux. Two readings give the share of those CPUs that
    other work took meanwhile, as it happened: the load average trails by a minute (a run just before reads as
    a busy host)."""
    try:
        import resource

        cpus = os.sched_getaffinity(0)
        lines = Path("/proc/stat").read_text().splitlines()
        tick = os.sysconf("SC_CLK_TCK")
    except (AttributeError, ImportError, OSError, ValueError):
        return None
    busy = 0
    for line in lines:
        name, *ticks = line.split()
        if name[:3] == "cpu" and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(t) for t in ticks[:8])
            busy += user + nice + system + irq + softirq + steal  # steal: a hypervisor ran something else
    own = resource.getrusage(resource.RUSAGE_SELF)
    return busy / tick, own.ru_utime + own.ru_stime, len(cpus)


def other_cpu_share(start: tuple[float, float, int] | None, end: tuple[float, float, int] | None,
                    wall_s: float) -> float | None:
    """The share of this process's CPUs that other work kept busy between two :func:`cpu_clock` readings."""
    if start is None or end is None or wall_s <= 0:
        return None
    other = (end[0] - start[0]) - (end[1] - start[1])
    return round(min(max(other / (wall_s * end[2]), 0.0), 1.0), 3)


def host_label(host: dict[str, Any]) -> str:
    """One line for titles: GPU, or CPU with its cores and features (files from before ``isa`` lack them)."""
    if host.get("gpu"):
        return str(host["gpu"])
    isa = host.get("isa")
    return f"{host['cpu']} ({host['cores']} cores{'; ' + ' '.join(isa) if isa else ''})"


def make_document(results: list[dict[str, Any]], gpu: str | None = None,
                  versions: dict[str, str] | None = None, load_before: float | None = None,
                  other_cpu: float | None = None) -> dict[str, Any]:
    """A complete, valid ``edgetl.bench/1`` document around ``results``; ``load_before`` is the host's load
    average taken before anything was loaded or timed (``host.load_average``, with the one at the end), and
    ``other_cpu`` the share of this process's CPUs other work took while the timings ran (``host.other_cpu``)."""
    from edgetl.card import library_versions

    host = host_info(gpu)
    if load_before is not None:
        host["load_average"] = {"before": load_before, "after": load_average()}
    if other_cpu is not None:
        host["other_cpu"] = other_cpu
    doc = {"schema": SCHEMA, "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "host": host, "versions": versions or library_versions("onnxruntime-gpu", "tensorrt"),
           "results": results}
    return validate(doc)
