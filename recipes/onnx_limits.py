"""What an ONNX file may declare before ffkit (or onnxruntime) acts on it.

Checked on the file's index (:class:`~ffkit.recipes.onnx_file.ModelInfo`, no weights loaded) by
every read, whatever the installed onnx / onnxruntime would do:

* **External data** stays inside the model's folder: a location that is absolute, climbs with
  ``..``, or resolves (through links) outside the folder is refused, and so is one whose file is
  missing or shorter than the bytes it must hold. (onnx >= 1.17 and onnxruntime >= 1.19 check
  the location too; older ones opened any path: ffkit does not depend on which is installed.)
* **Declared sizes**: an initializer whose data is shorter than its dims say (truncated or
  forged), one tensor over :data:`MAX_TENSOR_BYTES`, all weights over :data:`MAX_MODEL_BYTES`,
  and a ``Constant`` / ``ConstantOfShape`` / ``Expand`` / ``Tile`` whose shape, read from the
  file, makes a tensor over :data:`MAX_TENSOR_BYTES` (a 6-byte shape can ask for terabytes).

The caps are far above any face model (inswapper_128, the largest here, is 554 MB in all) and
are named in every message.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ArtifactError

__all__ = ["MAX_TENSOR_BYTES", "MAX_MODEL_BYTES", "check_model_limits"]

#: One tensor (weight, constant or a constant-shaped result): 2 GiB, protobuf's own message limit.
MAX_TENSOR_BYTES = 2 << 30
#: All weights of one model, in the file and in external data: 8 GiB.
MAX_MODEL_BYTES = 8 << 30

#: Bytes per element of the ONNX TensorProto data types (strings and unknown types: 1).
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2}


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB"


def _external_file(info, init) -> tuple[Path, int, int]:
    """The file, offset and length an external initializer's entries name, checked to lie in the
    model's folder."""
    entries = dict(init.external)
    location = entries.get("location", "")
    where = f"{info.path}: initializer {init.name!r} has its data in {location!r}"
    if not location:
        raise ArtifactError(f"{info.path}: initializer {init.name!r} is external data with no location")
    if os.path.isabs(location) or Path(location).drive:
        raise ArtifactError(f"{where}, an absolute path; refused (external data must lie beside the model)")
    if ".." in Path(location).parts:
        raise ArtifactError(f"{where}, outside the model's folder; refused")
    folder = Path(os.path.realpath(info.path)).parent
    target = Path(os.path.realpath(folder / location))
    if folder not in target.parents:
        raise ArtifactError(f"{where}, which links outside the model's folder; refused")
    if not target.is_file():
        raise ArtifactError(f"{where}, which does not exist")
    try:
        offset, length = int(entries.get("offset", 0)), int(entries.get("length", -1))
    except ValueError:
        raise ArtifactError(f"{where} at a non-numeric offset or length") from None
    return target, offset, length


def _shape_values(info, name: str) -> list[int] | None:
    """The int64 values of a small initializer ``name`` (a shape, stored as raw data), or None if not one."""
    init = info.initializer(name)
    if (init is None or init.data_type != 7 or len(init.dims) != 1 or init.elements > 16 or init.offset is None
            or init.packed_floats or init.length != 8 * init.elements):
        return None
    with open(info.path, "rb") as f:
        f.seek(init.offset)
        data = f.read(init.length)
    return [int(v) for v in np.frombuffer(data, dtype="<i8")]


def _declared_product(values: list[int]) -> int:
    total = 1
    for v in values:
        total *= max(v, 1)
    return total


def check_model_limits(info) -> None:
    """One-line :class:`ArtifactError` naming the file if ``info`` declares data outside its
    folder, data it does not hold, or tensors over the caps; nothing is allocated."""
    total = 0
    for init in info.initializers:
        item = _ITEM_BYTES.get(init.data_type, 1)
        need = init.elements * item
        if need > MAX_TENSOR_BYTES:
            raise ArtifactError(f"{info.path}: initializer {init.name!r} declares {_gib(need)} "
                                f"(dims {list(init.dims)}), over the {_gib(MAX_TENSOR_BYTES)} per-tensor cap")
        total += need
        if init.external:
            target, offset, length = _external_file(info, init)
            size = target.stat().st_size
            span = length if length >= 0 else need
            if offset < 0 or offset + span > size or (length >= 0 and length < need):
                raise ArtifactError(f"{info.path}: initializer {init.name!r} needs {need} bytes from "
                                    f"{target.name} at offset {offset}, which holds {size}: truncated or forged")
        elif init.offset is not None and init.elements and not init.packed_floats and init.length < need:
            raise ArtifactError(f"{info.path}: initializer {init.name!r} holds {init.length} bytes where its dims "
                                f"{list(init.dims)} need {need}: truncated or forged")
    if total > MAX_MODEL_BYTES:
        raise ArtifactError(f"{info.path}: its weights declare {_gib(total)}, over the {_gib(MAX_MODEL_BYTES)} cap")
    for op, inputs, tensors in info.sizing_nodes:
        sizes = [int(np.prod([max(d, 0) for d in dims], dtype=np.float64)) * 8 for dims in tensors]
        if op in ("ConstantOfShape", "Expand", "Tile"):
            index = 0 if op == "ConstantOfShape" else 1
            values = _shape_values(info, inputs[index]) if len(inputs) > index and inputs[index] else None
            if values is not None:
                sizes.append(_declared_product(values) * 8)   # at most 8 bytes per element
        worst = max(sizes, default=0)
        if worst > MAX_TENSOR_BYTES:
            raise ArtifactError(f"{info.path}: a {op} node declares a tensor of up to {_gib(worst)}, over the "
                                f"{_gib(MAX_TENSOR_BYTES)} per-tensor cap; refused before running it")
