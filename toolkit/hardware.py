"""What the CPU this runs on offers (read from ``/proc/cpuinfo``; empty elsewhere)."""

from __future__ import annotations

import functools
import os
import platform

#: ISA flags that change what onnxruntime's CPU kernels do (recorded with bound artifacts).
ISA_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
             "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16", "asimd", "asimddp")
#: Any of these means 8-bit dot products accumulate without saturation (no reduce_range needed).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of the first processor (``flags`` / ``Features`` line)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name (``model name``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_vnni() -> bool:
    """True when the CPU has an 8-bit dot-product instruction (VNNI / AMX / ARM dotprod)."""
    return bool(cpu_flags() & set(VNNI_FLAGS))


def cpu_description() -> dict:
    """``{"model", "machine", "isa", "cores"}``: what an ``all``-level artifact is bound to."""
    return {"model": cpu_model(), "machine": platform.machine(),
            "isa": sorted(cpu_flags() & set(ISA_FLAGS)), "cores": os.cpu_count()}
