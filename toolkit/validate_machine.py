"""The machine a ``ffkit validate`` run records: CPU name, its ISA flags, core count and the
library versions its speed figures depend on (no torch import: the runtime path stays fast)."""

from __future__ import annotations

import os
import platform

import numpy as np

from .hardware import ISA_FLAGS, cpu_flags, cpu_model


def validate_machine() -> dict:
    """``{"cpu", "isa", "logical_cpus", "platform", "python", "onnxruntime", "numpy", "loadavg"}``."""
    import onnxruntime as ort

    return {"cpu": cpu_model(), "isa": sorted(cpu_flags() & set(ISA_FLAGS)),
            "logical_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "onnxruntime": ort.__version__,
            "numpy": np.__version__, "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}
