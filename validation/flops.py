"""FLOPs per inference counted from an ONNX graph at concrete input dims.

Convention: one multiply-add is **2 FLOPs**; only the dense linear-algebra operators are
counted, because they are where a CNN spends its arithmetic and what a roofline compares
against a GEMM peak:

=================  ==========================================================================
operator           FLOPs
=================  ==========================================================================
Conv               ``2 * N * prod(Y spatial) * prod(W.shape)``  with ``W = [M, C/group, k...]``,
                   i.e. ``2 * N * M * Ho * Wo * (C/group) * kh * kw``: groups, strides,
                   padding and dilation enter through the output shape and W's shape.
ConvTranspose      ``2 * N * prod(X spatial) * prod(W.shape)`` with ``W = [C, M/group, k...]``
                   (each input pixel scatters one kernel footprint).
Gemm               ``2 * M * N * K`` (after ``transA`` / ``transB``).
MatMul             ``2 * prod(broadcast batch dims) * M * K * N`` (numpy semantics, 1-D
                   operands promoted as numpy does).
QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger
                   as their float counterparts (integer multiply-adds, counted the same way,
                   so an INT8 variant has the FP32 variant's count).
FusedConv, FusedGemm, FusedMatMul, NhwcFusedConv, MatMulIntegerToFloat (``com.microsoft``),
and the NCHWc ``Conv`` (``com.microsoft.nchwc``)
                   as Conv / Gemm / MatMul. NCHWc convolutions count their channel-padded
                   (blocked) shapes, so an ``all``-level graph can read slightly higher.
=================  ==========================================================================

Bias additions, activations, normalisations, resizes and element-wise ops are not counted
(under 2 % of the total on every ffkit recipe). Operators inside control-flow subgraphs
(If/Loop) are not counted.

Shapes: every graph input's dynamic axis (``dim_param``) is bound to the caller's ``dims``
(e.g. ``{"N": 4, "H": 640, "W": 640}``) and ``onnx.shape_inference`` propagates them. Where
inference leaves a counted operator's shape unknown (a Reshape fed by computed shapes, a
contrib op), the graph is run once in onnxruntime on zeros at those dims with the missing
tensors exposed as outputs, and the real shapes are read back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, shape_inference

from ffkit.recipes.errors import FfkitError

COUNTED = ("Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger",
           "FusedConv", "FusedGemm", "FusedMatMul", "MatMulIntegerToFloat", "NhwcFusedConv")

# Which node inputs hold (X, W) for each counted op; indices into node.input.
_OPERANDS = {
    "Conv": (0, 1), "ConvTranspose": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3),
    "Gemm": (0, 1), "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3),
    # onnxruntime contrib ops (com.microsoft) that optimised artifacts hold.
    "FusedConv": (0, 1), "NhwcFusedConv": (0, 1), "FusedGemm": (0, 1), "FusedMatMul": (0, 1),
    "MatMulIntegerToFloat": (0, 1),
}
_CONV = ("Conv", "ConvInteger", "QLinearConv", "FusedConv")
_DOMAINS = ("", "ai.onnx", "com.microsoft", "com.microsoft.nchwc")


@dataclass
class FlopCount:
    """The result of :func:`count_flops`: total FLOPs and where they are."""

    total: int
    by_op: dict[str, int] = field(default_factory=dict)
    by_node: list[tuple[str, str, int]] = field(default_factory=list)  # (node name, op type, flops)
    dims: dict[str, int] = field(default_factory=dict)
    shapes_from: str = "onnx.shape_inference"

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    def as_dict(self) -> dict:
        return {"total": self.total, "gflops": round(self.gflops, 4), "by_op": dict(self.by_op),
                "dims": dict(self.dims), "shapes_from": self.shapes_from}


def bind_input_dims(model: onnx.ModelProto, dims: Mapping[str, int] | None = None,
                    shapes: Mapping[str, Sequence[int]] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs have concrete shapes.

    ``shapes`` (input name -> full shape) wins; otherwise each ``dim_param`` is looked up in
    ``dims``. An axis left symbolic raises an FfkitError naming it. Intermediate ``value_info``
    is dropped so stale symbolic shapes do not survive inference.
    """
    dims, shapes = dict(dims or {}), dict(shapes or {})
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    del bound.graph.value_info[:]
    _bind(bound, dims, shapes)
    return bound


def _skeleton(model: onnx.ModelProto, keep_elements: int = 4096) -> onnx.ModelProto:
    """``model`` without its large initializers (declared as graph inputs instead): what shape
    inference needs, without copying and serialising hundreds of MB of weights."""
    light = onnx.ModelProto(ir_version=model.ir_version)
    light.opset_import.extend(model.opset_import)
    g, lg = model.graph, light.graph
    lg.name = g.name
    # Small Constant nodes become initializers: shape inference reads initializers (a Resize's
    # scales, a Pad's pads), not Constant outputs.
    for node in g.node:
        value = next((a for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and value.t.dims is not None and math.prod(value.t.dims) <= keep_elements:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            lg.initializer.append(tensor)
        else:
            lg.node.append(node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    declared = {i.name for i in g.input}
    for init in g.initializer:
        if math.prod(init.dims) <= keep_elements:
            lg.initializer.append(init)
        elif init.name not in declared:
            lg.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return light


def _bind(bound: onnx.ModelProto, dims: dict, shapes: dict) -> None:
    initializers = {i.name for i in bound.graph.initializer}
    for inp in bound.graph.input:
        if inp.name in initializers:
            continue
        tshape = inp.type.tensor_type.shape
        if inp.name in shapes:
            want = list(shapes[inp.name])
            if len(want) != len(tshape.dim):
                raise FfkitError(f"input {inp.name!r} has rank {len(tshape.dim)}, got shape {want}")
            for d, v in zip(tshape.dim, want):
                d.Clear()
                d.dim_value = int(v)
            continue
        for axis, d in enumerate(tshape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            name = d.dim_param
            if name not in dims:
                raise FfkitError(f"input {inp.name!r} axis {axis} is dynamic ({name or 'unnamed'}); "
                                 f"give its size (known: {', '.join(f'{k}={v}' for k, v in dims.items()) or 'none'})")
            d.Clear()
            d.dim_value = int(dims[name])


def _known_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every tensor whose shape is fully concrete after inference (inputs, value_info, outputs, initializers)."""
    found: dict[str, tuple[int, ...]] = {}
    g = model.graph
    for vi in (*g.input, *g.value_info, *g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if all(v >= 0 for v in dims):
            found[vi.name] = tuple(dims)
    for init in g.initializer:
        found[init.name] = tuple(init.dims)
    return found


def _needed(node: onnx.NodeProto) -> list[str]:
    x, w = _OPERANDS[node.op_type]
    names = [node.input[x], node.input[w]] if len(node.input) > w else [node.input[x]]
    return [*names, node.output[0]]


def _shapes_via_ort(model: onnx.ModelProto, missing: list[str]) -> dict[str, tuple[int, ...]]:
    """Run ``model`` (inputs already concrete) once on zeros with ``missing`` exposed as outputs."""
    from ffkit.runtime.sessions import SessionSettings, create_session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in missing:
        if name not in have:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    sess = create_session(probe, SessionSettings(level="disable"), name="shape probe")
    feeds = {}
    initializers = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        t = inp.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
        feeds[inp.name] = np.zeros([d.dim_value for d in t.shape.dim], dtype=dtype)
    outs = sess.run(missing, feeds)
    return {n: tuple(o.shape) for n, o in zip(missing, outs)}


def _node_flops(node: onnx.NodeProto, shapes: Mapping[str, tuple[int, ...]]) -> int:
    op = node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    xi, wi = _OPERANDS[op]
    x = shapes[node.input[xi]]
    w = shapes[node.input[wi]]
    y = shapes[node.output[0]]
    if op == "NhwcFusedConv" or (op == "QLinearConv" and attrs.get("channels_last", 0)):
        return 2 * y[0] * math.prod(y[1:-1]) * math.prod(w)
    if op in _CONV:
        return 2 * y[0] * math.prod(y[2:]) * math.prod(w)
    if op == "ConvTranspose":
        return 2 * x[0] * math.prod(x[2:]) * math.prod(w)
    if op in ("Gemm", "FusedGemm"):
        m, k = (x[1], x[0]) if attrs.get("transA", 0) else (x[0], x[1])
        n = w[0] if attrs.get("transB", 0) else w[1]
        return 2 * m * n * k
    # MatMul family, numpy semantics (FusedMatMul may transpose its last two axes).
    a, b = list(x), list(w)
    if attrs.get("transA", 0) and len(a) >= 2:
        a[-1], a[-2] = a[-2], a[-1]
    if attrs.get("transB", 0) and len(b) >= 2:
        b[-1], b[-2] = b[-2], b[-1]
    if len(a) == 1:
        a = [1, *a]
    if len(b) == 1:
        b = [*b, 1]
    m, k, n = a[-2], a[-1], b[-1]
    batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    return 2 * math.prod(batch) * m * k * n


def count_flops(model: onnx.ModelProto | str | Path, dims: Mapping[str, int] | None = None,
                shapes: Mapping[str, Sequence[int]] | None = None, allow_ort: bool = True) -> FlopCount:
    """FLOPs of one inference of ``model`` with its dynamic axes bound to ``dims``.

    ``model`` is a proto or a path. ``dims`` maps ``dim_param`` names to sizes (``{"N": 1}``);
    ``shapes`` maps input names to full shapes and wins over ``dims``. When static inference
    leaves a counted operator's shape unknown and ``allow_ort``, onnxruntime supplies it (see the
    module docstring); otherwise an FfkitError names the node.
    """
    if not isinstance(model, onnx.ModelProto):
        from ffkit.recipes.onnx_file import load_onnx

        model = load_onnx(model)
    light = _skeleton(model)
    _bind(light, dict(dims or {}), dict(shapes or {}))
    try:
        inferred = shape_inference.infer_shapes(light, data_prop=True)
    except Exception:  # noqa: BLE001 - fall back to ORT for anything inference cannot do
        inferred = light
    known = _known_shapes(inferred)
    nodes = [n for n in inferred.graph.node if n.op_type in COUNTED and n.domain in _DOMAINS]
    missing = sorted({t for n in nodes for t in _needed(n) if t and t not in known})
    source = "onnx.shape_inference"
    if missing:
        if not allow_ort:
            raise FfkitError(f"shape inference leaves {missing[0]!r} unknown ({len(missing)} tensors)")
        known.update(_shapes_via_ort(bind_input_dims(model, dims, shapes), missing))
        source = f"onnx.shape_inference + onnxruntime ({len(missing)} tensors)"
    by_op: dict[str, int] = {}
    by_node: list[tuple[str, str, int]] = []
    for n in nodes:
        f = int(_node_flops(n, known))
        by_op[n.op_type] = by_op.get(n.op_type, 0) + f
        by_node.append((n.name or n.output[0], n.op_type, f))
    total = sum(by_op.values())
    bound_dims = dict(dims or {})
    return FlopCount(total, by_op, by_node, bound_dims, source)


__all__ = ["COUNTED", "FlopCount", "bind_input_dims", "count_flops"]
