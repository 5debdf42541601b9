"""What CPU this is: its model name and the instruction-set features that decide speed and portability.

Benchmark reports record the features (INT8 speed depends on VNNI); AOTInductor packages record them too,
since inductor compiles for the exporting CPU (``-march=native``) and a CPU without them would crash.
"""

from __future__ import annotations

# CPU features that decide how fast (and, for INT8 without a dot-product instruction, how exactly) a CPU runs
# these models: the same ONNX file is measured 5.5x faster than PyTorch with AVX-512 VNNI and 3.8x with AVX2 alone.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
             "asimddp", "i8mm", "sve")


# Instruction-set extensions a compiler may use under -march=native (x86 and Arm names as /proc/cpuinfo spells
# them): what an AOTInductor CPU package records and checks. Not other flags (hypervisor, constant_tsc, ...),
# which differ between machines without changing what code runs.
MARCH_FLAGS = ("sse4_1", "sse4_2", "ssse3", "popcnt", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe",
               "abm", "adx", "aes", "pclmulqdq", "sha_ni", "gfni", "vaes", "vpclmulqdq", "avx_vnni", "avx512f",
               "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2",
               "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512_bf16", "avx512_fp16", "avx_vnni_int8",
               "avx_ifma", "amx_tile", "amx_int8", "amx_bf16", "asimd", "atomics", "asimddp", "asimdhp", "fphp",
               "i8mm", "bf16", "sve", "sve2")


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


def cpu_features(names: tuple[str, ...] = MARCH_FLAGS) -> list[str]:
    """The features of ``names`` this CPU has, in that order (empty where /proc/cpuinfo is missing)."""
    flags = cpuinfo()[1]
    return [f for f in names if f in flags]


def missing_cpu_features(required: str) -> list[str]:
    """Which of ``required`` (comma-separated, as packages record it) this CPU lacks; none when it cannot tell."""
    have = cpuinfo()[1]
    return [f for f in required.split(",") if f and f not in have] if have else []
