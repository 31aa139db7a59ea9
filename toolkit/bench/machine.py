"""The machine a benchmark runs on: physical cores, CPU model and the ISA flags that matter for
kernels, library versions and load (recorded in every report as ``machine``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ..hardware import cpu_flags, cpu_model

#: The ISA flags a benchmark report lists, in this order (the ones kernels choose by).
BENCH_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "f16c")


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in allowed:
        try:
            text = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
            cores.add(text)
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def machine_info() -> dict:
    """CPU model, core counts, flags that matter for kernels, library versions, load average."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "logical_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                            "physical_cores": physical_cores()}
    info["cpu"] = cpu_model()
    info["isa"] = [f for f in BENCH_ISA_FLAGS if f in cpu_flags()]
    import onnxruntime as ort

    info["onnxruntime"] = ort.__version__
    info["numpy"] = np.__version__
    try:
        import torch  # noqa: F401 - optional

        info["torch"] = torch.__version__
    except ModuleNotFoundError:
        info["torch"] = None
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info

