"""Cross-check with NVIDIA's trtexec on the same engine: the ratio says whether our harness adds overhead."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgetl.errors import EdgetlError

_NUM = r"([0-9.]+(?:e[-+]?\d+)?)"


def find_trtexec() -> str:
    """Path of trtexec (PATH, then the usual TensorRT / JetPack locations); a one-line error otherwise."""
    found = shutil.which("trtexec")
    for candidate in (found, "/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise EdgetlError("--trtexec: trtexec not found on PATH (it ships with TensorRT: /usr/src/tensorrt/bin on "
                      "JetPack, bin/ of the TensorRT tarball); add it to PATH or drop --trtexec")


def parse_trtexec(output: str) -> dict[str, Any]:
    """Throughput (qps = batches/s) and 'GPU Compute Time' statistics (ms) from trtexec's summary."""
    out: dict[str, Any] = {}
    m = re.search(rf"Throughput:\s*{_NUM}\s*qps", output)
    if m:
        out["qps"] = float(m.group(1))
    m = re.search(r"GPU Compute Time:(.*)", output)
    if m:
        line = m.group(1)
        for key, pat in (("min", "min"), ("max", "max"), ("mean", "mean"), ("median", "median"),
                         ("p90", r"percentile\(90%\)"), ("p95", r"percentile\(95%\)"), ("p99", r"percentile\(99%\)")):
            km = re.search(rf"{pat}\s*=\s*{_NUM}\s*ms", line)
            if km:
                out[key] = float(km.group(1))
    if "qps" not in out or "mean" not in out:
        raise EdgetlError("could not read trtexec's summary (Throughput / GPU Compute Time); run it by hand to see why")
    return out


def timing_command(exe: str, engine: str | Path, input_name: str, shape: tuple[int, ...], duration_s: float,
                   dla_core: int | None) -> list[str]:
    """trtexec timing ``engine`` as edgetl's compute mode does: device-resident data, after a warm-up."""
    dims = "x".join(map(str, shape))
    cmd = [exe, f"--loadEngine={engine}", f"--shapes={input_name}:{dims}", "--noDataTransfers",
           f"--duration={max(1, int(duration_s))}", "--warmUp=500", "--useSpinWait"]
    return cmd + ([f"--useDLACore={dla_core}"] if dla_core is not None else [])


def run_trtexec(engine: str | Path, input_name: str, shape: tuple[int, ...], duration_s: float = 3.0,
                timeout_s: float = 600.0, dla_core: int | None = None) -> dict[str, Any]:
    """Run trtexec on ``engine`` at ``shape`` (CUDA graphs off, no data transfers) and parse its figures.

    A DLA engine loads only on the DLA core it was built for (``dla_core``, from its build record).
    """
    cmd = timing_command(find_trtexec(), engine, input_name, shape, duration_s, dla_core)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise EdgetlError(f"trtexec timed out after {timeout_s:.0f} s on {engine}; time it alone with the command "
                          f"`{' '.join(cmd)}` to see where it stops") from None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise EdgetlError(f"trtexec failed on {engine} ({tail[0][:200]}); run `{' '.join(cmd)}` for its full log, "
                          "or drop --trtexec")
    return {"command": " ".join(cmd), **parse_trtexec(proc.stdout)}


def trtexec_comparison(result: dict[str, Any], engine: str | Path, input_name: str,
                       input_shape: tuple[int, ...], dla_core: int | None = None) -> dict[str, Any]:
    """trtexec's figures beside one edgetl compute-mode result, with latency and throughput ratios."""
    batch = int(result["batch"])
    shape = (batch, *input_shape)
    ref = run_trtexec(engine, input_name, shape, dla_core=dla_core)
    ips = ref["qps"] * batch
    return {"batch": batch, "trtexec": ref, "trtexec_ips": ips,
            "latency_ratio": result["latency_ms"]["mean"] / ref["mean"],
            "throughput_ratio": result["throughput_ips"] / ips}
