"""The one ONNX reader (and writer): every ffkit package opens ONNX files through this module.

Two depths of reading, one set of checks and messages (:func:`check_onnx_path`):

* :func:`read_model_info` reads what a file says about itself without loading its weights:
  ``metadata_props``, graph inputs/outputs and every initializer's name, dims and position. It
  walks the protobuf wire format over a memory map, skipping each weight by its length, so
  scanning a models folder of several hundred-megabyte artifacts touches a few kilobytes per
  file; :func:`read_initializer` then reads one initializer (e.g. the inswapper ``emap``)
  straight from the file. Pure python + numpy.
* :func:`load_onnx` loads the whole ``onnx.ModelProto`` (stages, verify, export);
  :func:`save_onnx` writes one atomically.

Every failure is a one-line :class:`~ffkit.recipes.errors.ArtifactError` naming the file.
Field numbers are those of ``onnx/onnx.proto`` (stable since IR version 3).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .atomic import atomic_path
from .errors import ArtifactError
from .onnx_limits import check_model_limits
from .onnx_wire import encode_field, encode_varint
from .onnx_wire import fields as _fields
from .onnx_wire import signed as _signed
from .onnx_wire import string_pair as _string_pair
from .onnx_wire import text as _text
from .onnx_wire import varint as _varint
from .paths import require_file

__all__ = ["TensorInfo", "InitializerInfo", "ModelInfo", "check_onnx_path", "read_model_info", "read_initializer",
           "load_onnx", "save_onnx", "dynamic_dims", "light_model"]

#: ONNX TensorProto.DataType -> numpy dtype (the ones a model's I/O or emap can use).
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16,
               11: np.float64, 9: np.bool_}

# ModelProto
_M_GRAPH, _M_METADATA = 7, 14
# GraphProto
_G_NODE, _G_INITIALIZER, _G_INPUT, _G_OUTPUT = 1, 5, 11, 12
# NodeProto
_N_NAME, _N_OP_TYPE, _N_DOMAIN = 3, 4, 7
#: How many leading nodes :class:`ModelInfo` keeps (insightface's ArcFaceONNX reads the first 8).
HEAD_NODES = 8
# TensorProto
_T_DIMS, _T_DATA_TYPE, _T_FLOAT_DATA, _T_NAME, _T_RAW_DATA, _T_EXTERNAL, _T_DATA_LOCATION = 1, 2, 4, 8, 9, 13, 14
# NodeProto inputs and attributes; AttributeProto's tensor
_N_INPUT, _N_ATTRIBUTE, _A_TENSOR = 1, 5, 5
#: Node types whose output size a file can declare (a constant, or a shape read from an initializer).
SIZING_OPS = frozenset({"Constant", "ConstantOfShape", "Expand", "Tile"})


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: ``shape`` holds ints, dim_param strings, or None (unknown)."""

    name: str
    shape: tuple[int | str | None, ...]
    elem_type: int  # ONNX TensorProto.DataType (1 = float32, 10 = float16)

    @property
    def dtype(self):
        return ONNX_DTYPES.get(self.elem_type)


@dataclass(frozen=True)
class InitializerInfo:
    """Where one initializer's data lies in the file (``offset``/``length`` in bytes)."""

    name: str
    dims: tuple[int, ...]
    data_type: int
    offset: int | None = None  # of raw_data or packed float_data; None: external or not raw
    length: int = 0
    packed_floats: bool = False
    external: tuple[tuple[str, str], ...] = ()  # external_data key/value pairs (location, offset, length)

    @property
    def elements(self) -> int:
        """Elements its dims declare (negative dims count as 0)."""
        n = 1
        for d in self.dims:
            n *= max(int(d), 0)
        return n


@dataclass(frozen=True)
class ModelInfo:
    """Metadata and interface of one ONNX file (weights not read)."""

    path: Path
    metadata: dict[str, str]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    initializers: tuple[InitializerInfo, ...] = ()
    head_nodes: tuple[tuple[str, str], ...] = ()  # (name, op_type) of the first HEAD_NODES nodes
    op_types: frozenset[tuple[str, str]] = frozenset()  # (domain, op_type) of every node ("" = ONNX)
    #: (op_type, input names, dims of each tensor attribute) of the nodes that can make a tensor
    #: of a declared size: Constant, ConstantOfShape, Expand, Tile (checked by :mod:`.onnx_limits`)
    sizing_nodes: tuple[tuple[str, tuple[str, ...], tuple[tuple[int, ...], ...]], ...] = ()

    @property
    def parameter_count(self) -> int:
        """Elements in all initializers (the weights; shape constants are negligible)."""
        return sum(init.elements for init in self.initializers)

    @property
    def last_initializer(self) -> InitializerInfo | None:
        """The graph's last initializer (where insightface looks for the inswapper emap)."""
        return self.initializers[-1] if self.initializers else None

    def initializer(self, name: str) -> InitializerInfo | None:
        """The first initializer called ``name``, or None."""
        return next((init for init in self.initializers if init.name == name), None)


def _value_info(buf, start: int, end: int) -> TensorInfo:
    name, shape, elem = "", [], 0
    for num, wire, a, b in _fields(buf, start, end):
        if num == 1 and wire == 2:
            name = _text(buf, a, b)
        elif num == 2 and wire == 2:  # TypeProto
            for tnum, twire, ta, tb in _fields(buf, a, b):
                if tnum == 1 and twire == 2:  # tensor_type
                    for xnum, xwire, xa, xb in _fields(buf, ta, tb):
                        if xnum == 1 and xwire == 0:
                            elem = xa
                        elif xnum == 2 and xwire == 2:  # TensorShapeProto
                            for dnum, dwire, da, db in _fields(buf, xa, xb):
                                if dnum == 1 and dwire == 2:
                                    dim = None
                                    for vnum, vwire, va, vb in _fields(buf, da, db):
                                        if vnum == 1 and vwire == 0:
                                            dim = _signed(va)
                                        elif vnum == 2 and vwire == 2:
                                            dim = _text(buf, va, vb)
                                    shape.append(dim)
    return TensorInfo(name, tuple(shape), elem)


def _initializer(buf, start: int, end: int) -> InitializerInfo:
    name, dims, dtype, offset, length, packed, external = "", [], 0, None, 0, False, False
    entries: list[tuple[str, str]] = []
    for num, wire, a, b in _fields(buf, start, end):
        if num == _T_EXTERNAL and wire == 2:
            entries.append(_string_pair(buf, a, b))
        elif num == _T_DIMS:
            if wire == 0:
                dims.append(_signed(a))
            elif wire == 2:  # packed
                pos = a
                while pos < b:
                    v, pos = _varint(buf, pos)
                    dims.append(_signed(v))
        elif num == _T_DATA_TYPE and wire == 0:
            dtype = a
        elif num == _T_NAME and wire == 2:
            name = _text(buf, a, b)
        elif num == _T_RAW_DATA and wire == 2:
            offset, length = a, b - a
        elif num == _T_FLOAT_DATA and wire == 2:
            offset, length, packed = a, b - a, True
        elif num == _T_DATA_LOCATION and wire == 0 and a == 1:
            external = True
    if external:
        offset, length = None, 0
    return InitializerInfo(name, tuple(dims), dtype, offset, length, packed, tuple(entries))


def _node(buf, start: int, end: int) -> tuple[str, str, str, tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """``(name, op_type, domain, inputs, dims of each tensor attribute)`` of one NodeProto."""
    name = op = domain = ""
    inputs: list[str] = []
    tensors: list[tuple[int, ...]] = []
    for nnum, nwire, na, nb in _fields(buf, start, end):
        if nwire != 2:
            continue
        if nnum == _N_NAME:
            name = _text(buf, na, nb)
        elif nnum == _N_OP_TYPE:
            op = _text(buf, na, nb)
        elif nnum == _N_DOMAIN:
            domain = _text(buf, na, nb)
        elif nnum == _N_INPUT:
            inputs.append(_text(buf, na, nb))
        elif nnum == _N_ATTRIBUTE:
            for anum, awire, aa, ab in _fields(buf, na, nb):
                if anum == _A_TENSOR and awire == 2:
                    tensors.append(_initializer(buf, aa, ab).dims)
    return name, op, domain, tuple(inputs), tuple(tensors)


def _scan(buf, path: Path) -> ModelInfo:
    metadata: dict[str, str] = {}
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    initializers: list[InitializerInfo] = []
    head: list[tuple[str, str]] = []
    op_types: set[tuple[str, str]] = set()
    sizing: list[tuple[str, tuple[str, ...], tuple[tuple[int, ...], ...]]] = []
    saw_graph = False
    for num, wire, a, b in _fields(buf, 0, len(buf)):
        if num == _M_METADATA and wire == 2:
            key, value = _string_pair(buf, a, b)
            metadata[key] = value
        elif num == _M_GRAPH and wire == 2:
            saw_graph = True
            for gnum, gwire, ga, gb in _fields(buf, a, b):
                if gwire != 2:
                    continue
                if gnum == _G_NODE:
                    name, op, domain, node_inputs, tensors = _node(buf, ga, gb)
                    if domain in ("", "ai.onnx") and op in SIZING_OPS:
                        sizing.append((op, node_inputs, tensors))
                    op_types.add((domain, op))
                    if len(head) < HEAD_NODES:
                        head.append((name, op))
                elif gnum == _G_INPUT:
                    inputs.append(_value_info(buf, ga, gb))
                elif gnum == _G_OUTPUT:
                    outputs.append(_value_info(buf, ga, gb))
                elif gnum == _G_INITIALIZER:
                    initializers.append(_initializer(buf, ga, gb))
    if not saw_graph or not outputs:
        raise ValueError("no graph")
    return ModelInfo(path, metadata, tuple(inputs), tuple(outputs), tuple(initializers), tuple(head),
                     frozenset(op_types), tuple(sizing))


def check_onnx_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is a non-empty regular file, else a one-line ArtifactError."""
    return require_file(path, ArtifactError, empty="empty file, not an ONNX model")


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """Metadata, inputs, outputs and initializer index of the ONNX file at ``path`` (no weights read).

    Raises :class:`~ffkit.recipes.errors.ArtifactError` (one line naming the file) for a
    missing, empty, truncated or non-ONNX file.
    """
    path = check_onnx_path(path)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            info = _scan(mm, path)
    except OSError as err:
        raise ArtifactError(f"{path}: cannot read it ({err.strerror or err})") from None
    except (ValueError, IndexError) as err:
        raise ArtifactError(f"{path}: not an ONNX model or truncated ({err})") from None
    check_model_limits(info)
    return info


def read_initializer(info: ModelInfo, init: InitializerInfo) -> np.ndarray:
    """The data of ``init`` (from ``info``'s file) as a numpy array of its dims.

    Reads ``raw_data`` or packed ``float_data`` in place; for an initializer stored as
    external data or in typed fields other than float_data, falls back to ``onnx``.
    """
    dtype = ONNX_DTYPES.get(init.data_type)
    if init.offset is not None and dtype is not None:
        if init.packed_floats:
            dtype = np.float32
        with open(info.path, "rb") as f:
            f.seek(init.offset)
            data = f.read(init.length)
        arr = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
        if arr.size == int(np.prod(init.dims)):
            return arr.reshape(init.dims).astype(dtype, copy=True)
    from onnx import numpy_helper

    model = load_onnx(info.path)
    for tensor in model.graph.initializer:
        if tensor.name == init.name:
            return numpy_helper.to_array(tensor)
    raise ArtifactError(f"{info.path}: initializer {init.name!r} not found")


def load_onnx(path: str | os.PathLike, load_weights: bool = True):
    """The whole ``onnx.ModelProto`` of the file at ``path`` (external data too, unless not
    ``load_weights``); a missing, truncated or non-ONNX file is a one-line ArtifactError."""
    import onnx
    from google.protobuf.message import DecodeError

    path = check_onnx_path(path)
    read_model_info(path)  # the same checks first: sizes, external data locations
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except OSError as err:
        raise ArtifactError(f"{path}: cannot read it or its external data ({err.strerror or err})") from None
    except (DecodeError, RuntimeWarning, ValueError) as err:
        raise ArtifactError(f"{path}: not an ONNX model or truncated ({type(err).__name__})") from None
    except Exception as err:  # noqa: BLE001 - protobuf raises assorted types on garbage
        raise ArtifactError(f"{path}: not an ONNX model or truncated ({type(err).__name__}: {err})") from None
    if not model.graph.node or not model.graph.output:
        raise ArtifactError(f"{path}: not an ONNX model or truncated (no graph)")
    return model


def save_onnx(model, path: str | os.PathLike) -> Path:
    """Write the ``onnx.ModelProto`` ``model`` to ``path`` atomically (temp file beside it, then
    rename); returns the path."""
    import onnx

    path = Path(path)
    with atomic_path(path, need_bytes=model.ByteSize()) as tmp:   # free space checked before writing
        onnx.save(model, str(tmp))
    return path


#: Largest initializer (elements) :func:`light_model` keeps with its data (shape constants are small).
LIGHT_ELEMENTS = 4096


def _light_bytes(buf) -> tuple[bytes, list[InitializerInfo]]:
    """``buf``'s ModelProto re-encoded without its initializers over :data:`LIGHT_ELEMENTS`
    elements (skipped by length, never read), and those initializers' index entries."""
    out, dropped = bytearray(), []
    for num, wire, a, b in _fields(buf, 0, len(buf)):
        if num != _M_GRAPH or wire != 2:
            out += encode_field(buf, num, wire, a, b)
            continue
        graph = bytearray()
        for gnum, gwire, ga, gb in _fields(buf, a, b):
            if gnum == _G_INITIALIZER and gwire == 2:
                init = _initializer(buf, ga, gb)
                if init.elements > LIGHT_ELEMENTS:
                    dropped.append(init)
                    continue
            graph += encode_field(buf, gnum, gwire, ga, gb)
        out += encode_varint(_M_GRAPH << 3 | 2) + encode_varint(len(graph)) + graph
    return bytes(out), dropped


def light_model(source: str | os.PathLike | bytes):
    """The ``onnx.ModelProto`` of an ONNX file (or serialised bytes) without its weights: every
    initializer over :data:`LIGHT_ELEMENTS` elements becomes a graph input of its type and dims,
    so ONNX shape inference sees the whole graph at the cost of its nodes (weights are skipped
    by length, not read). A file that cannot be read is a one-line ArtifactError naming it."""
    import onnx
    from onnx import helper

    label = "model" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            data, dropped = _light_bytes(source)
        else:
            with open(check_onnx_path(source), "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                data, dropped = _light_bytes(mm)
        model = onnx.load_from_string(data)
    except OSError as err:
        raise ArtifactError(f"{label}: cannot read it ({err.strerror or err})") from None
    except Exception as err:  # noqa: BLE001 - protobuf raises assorted types on garbage
        raise ArtifactError(f"{label}: not an ONNX model or truncated ({type(err).__name__})") from None
    listed = {vi.name for vi in model.graph.input}
    model.graph.input.extend(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
                             for init in dropped if init.name not in listed)
    return model


def dynamic_dims(model) -> dict[str, dict[int, str]]:
    """``{input/output name: {axis: dim_param}}`` for the named dynamic axes of an
    ``onnx.ModelProto``'s graph inputs and outputs."""
    found = {}
    for vi in [*model.graph.input, *model.graph.output]:
        named = {i: d.dim_param for i, d in enumerate(vi.type.tensor_type.shape.dim) if d.dim_param}
        if named:
            found[vi.name] = named
    return found


def model_info_of(model, path: str | os.PathLike = "in-memory model") -> ModelInfo:
    """The :class:`ModelInfo` of an already loaded ``onnx.ModelProto`` (no offsets: the weights
    are in memory), so a proto and a file are described, and matched, the same way."""

    def tensor_info(vi) -> TensorInfo:
        dims = []
        for d in vi.type.tensor_type.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
        return TensorInfo(vi.name, tuple(dims), vi.type.tensor_type.elem_type)

    graph = model.graph
    return ModelInfo(
        Path(path), {p.key: p.value for p in model.metadata_props},
        tuple(tensor_info(vi) for vi in graph.input), tuple(tensor_info(vi) for vi in graph.output),
        tuple(InitializerInfo(i.name, tuple(i.dims), i.data_type) for i in graph.initializer),
        tuple((n.name, n.op_type) for n in graph.node[:HEAD_NODES]),
        frozenset((n.domain, n.op_type) for n in graph.node))
