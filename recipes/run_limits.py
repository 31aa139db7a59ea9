"""What one run of an ONNX file may make: no tensor over a cap, checked before onnxruntime runs it.

:mod:`ffkit.recipes.onnx_limits` checks what a file declares (weights, constants, shapes read
from the file). A graph can also compute a size at run time (``Shape`` of the input, times a
constant, into ``ConstantOfShape``, ``Expand``, ``Reshape``...), so a 1 KB file can ask for
gigabytes on an ordinary photo. :class:`RunGuard` runs ONNX shape inference, with data
propagation, on the graph without its weights (:func:`~ffkit.recipes.onnx_file.light_model`) at
the concrete input shapes about to be run, once per distinct set of shapes, and refuses a run in
which any tensor would exceed :func:`run_tensor_cap`: the larger of :data:`MAX_RUN_TENSOR_BYTES`
and :data:`RUN_GROWTH` times the bytes of the run's inputs. The largest tensors of the face models
are far below it (Real-ESRGAN x4 at one megapixel: 4 GB, 340 times its input).

Why shape inference and not an allocator limit: it refuses before anything is allocated, on
every execution provider (onnxruntime's arena limit is process-wide, shared by every session, and
CPU-only), and it names the tensor. What it cannot see, a size that depends on the input's
values (``NonZero``, ``Range`` of a computed bound), is left to onnxruntime, whose failure to
allocate is reported as one line naming the file by the session factory.
"""

from __future__ import annotations

import os
import threading
from typing import Mapping

import numpy as np

from .errors import ArtifactError

__all__ = ["MAX_RUN_TENSOR_BYTES", "RUN_GROWTH", "run_tensor_cap", "tensor_sizes", "RunGuard"]

#: A run may always make a tensor of this size: 2 GiB.
MAX_RUN_TENSOR_BYTES = 2 << 30
#: ... or of this many times the bytes of all its inputs, when that is larger.
RUN_GROWTH = 512

#: Bytes per element of the ONNX TensorProto data types (strings and unknown types: 1).
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2}


def run_tensor_cap(input_bytes: int) -> int:
    """The largest tensor (bytes) a run whose inputs hold ``input_bytes`` may make."""
    return max(MAX_RUN_TENSOR_BYTES, RUN_GROWTH * int(input_bytes))


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB"


def tensor_sizes(model, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, tuple[int, ...]]]:
    """``{tensor: (bytes, dims)}`` of every value of ``model`` (an ``onnx.ModelProto``, best
    without its weights) whose shape ONNX shape inference resolves with the graph inputs at
    ``shapes``; values it cannot resolve are left out (inference is best effort)."""
    import onnx
    from onnx import helper

    graph = model.graph
    inputs = [helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, list(shapes[vi.name]))
              if vi.name in shapes else vi for vi in graph.input]
    probe = helper.make_model(helper.make_graph(graph.node, "run-limits", inputs, graph.output, graph.initializer),
                              opset_imports=model.opset_import, ir_version=model.ir_version)
    probe.functions.extend(model.functions)
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True).graph
    except Exception:  # noqa: BLE001 - inference is best effort: an unknown op leaves shapes unknown
        return {}
    sizes = {}
    for vi in [*inferred.value_info, *inferred.output]:
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        if vi.type.HasField("tensor_type") and tt.HasField("shape") and all(d >= 0 for d in dims):
            count = int(np.prod(dims, dtype=np.float64))
            sizes[vi.name] = (count * _ITEM_BYTES.get(tt.elem_type, 1), dims)
    return sizes


class RunGuard:
    """Refuses a run of one model that would make a tensor over :func:`run_tensor_cap`.

    ``source``: the ONNX file's path or serialised bytes (its graph is read without weights, on
    the first check for a path, at once for bytes); ``label``: the file the user gave, for messages.
    Thread-safe; each distinct set of input shapes is inferred once.
    """

    def __init__(self, source: str | os.PathLike | bytes, label: str):
        from .onnx_file import light_model

        self.label = label
        self._source = None if isinstance(source, (bytes, bytearray)) else source
        self._model = light_model(source) if self._source is None else None
        self._passed: set[tuple] = set()
        self._lock = threading.Lock()

    def check(self, feeds: Mapping[str, np.ndarray]) -> None:
        """One-line :class:`ArtifactError` naming the file if running on ``feeds`` would make a
        tensor over the cap; nothing is run or allocated."""
        key = tuple(sorted((name, tuple(np.shape(v))) for name, v in feeds.items()))
        if key in self._passed:
            return
        with self._lock:
            if self._model is None:
                from .onnx_file import light_model

                self._model = light_model(self._source)
            sizes = tensor_sizes(self._model, dict(key))
            cap = run_tensor_cap(sum(np.asarray(v).nbytes for v in feeds.values()))
            name, (worst, dims) = max(sizes.items(), key=lambda kv: kv[1][0], default=("", (0, ())))
            if worst > cap:
                shapes = ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in key)
                raise ArtifactError(f"{self.label}: running it on {shapes} would make tensor {name!r} of "
                                    f"{_gib(worst)} (dims {list(dims)}), over the {_gib(cap)} cap "
                                    f"({_gib(MAX_RUN_TENSOR_BYTES)} or {RUN_GROWTH} times its inputs); "
                                    "refused before running it")
            self._passed.add(key)
