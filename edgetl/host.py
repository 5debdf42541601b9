"""What CPU this is: its model name and the instruction-set features that decide speed and portability.

Benchmark reports record the features (INT8 speed depends on VNNI); AOTInductor packages record them too,
since inductor compiles for the exporting CPU (``-march=native``) and a CPU without them would crash.
"""

from __future__ import annotations

# CPU features that decide how fast (and, for INT8 without a dot-product instruction, how exactly) a CPU runs
# these models: the same ONNX file is measured 5.5x faster than PyTorch with AVX-512 VNNI and 3.8x with AVX2 alone.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
             "asimddp", "i8mm", "sve")


def cpuinfo() -> tuple[str | None, set[str]]:
    """Model name and feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"); (None, {}) elsewhere."""
    name: str | None = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for ln in fh:
                key, _, value = ln.partition(":")
                key = key.strip()
                if key == "model name" and name is None:
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name, flags


def cpu_features() -> list[str]:
    """The features of :data:`ISA_FLAGS` this CPU has, in that order (empty where /proc/cpuinfo is missing)."""
    flags = cpuinfo()[1]
    return [f for f in ISA_FLAGS if f in flags]


def missing_cpu_features(required: str) -> list[str]:
    """Which of ``required`` (comma-separated, as packages record it) this CPU lacks; none when it cannot tell."""
    have = cpuinfo()[1]
    return [f for f in required.split(",") if f and f not in have] if have else []
