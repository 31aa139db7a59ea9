"""Run an ONNX model (path or in-memory proto) in onnxruntime for checks and measurements."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import onnx
import onnxruntime as ort

from .errors import ArtifactError


def make_session(model: onnx.ModelProto | str | os.PathLike, threads: int = 0,
                 providers: list[str] | None = None,
                 level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.InferenceSession:
    """An InferenceSession on ``providers`` (default CPU); ``threads=0`` lets ORT choose."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    try:
        return ort.InferenceSession(source, opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
        name = "model" if isinstance(model, onnx.ModelProto) else str(model)
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise ArtifactError(f"{name}: onnxruntime cannot load it ({first})") from None


def run(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run and return ``{output_name: array}`` in the session's output order."""
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    outs = session.run(names, {k: v for k, v in feeds.items() if k in wanted})
    return dict(zip(names, outs))
