"""Graph wrappers: an ffkit artifact re-expressed with the I/O a FaceFusion slot expects.

Each wrapper returns a NEW ``onnx.ModelProto`` holding the artifact's graph whole, with nodes
added before its inputs or after its outputs; the artifact itself is never edited. A wrapped
file records no ``ffkit.recipe`` (its I/O is no longer the recipe's) but ``ffkit.facefusion``:
the slot, the wrapper, and the recipe, variant and sha256 of the file it wraps.

* ``simswap_inputs``: the identity input ``source_latent`` renamed ``source`` (FaceFusion feeds
  its swapper's inputs by name: ``target`` and ``source``).
* ``fan_points``: a BGR / 255 crop in (FaceFusion feeds the frame's BGR order; ffkit's file
  takes RGB: a channel Gather first), and two outputs, as FaceFusion unpacks them: ``landmarks``
  ``N x 68 x 3`` = (x, y, score) in 64-px heatmap units, decoded in the graph by ffkit's rule
  (:func:`ffkit.runtime.landmarker.decode_heatmaps`: first arg-max, +-0.25 toward the larger
  neighbour off the border ring, +0.5; score = the peak), then ``heatmaps`` unchanged.
* ``retinaface_strides``: the detector slot, built by :mod:`ffkit.toolkit.detector_wrap`.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..detector_wrap import FACEFUSION_PIXELS, scrfd_from_retinaface

__all__ = ["WRAPPERS", "rename_tensor", "wrap_simswap_inputs", "wrap_fan_points", "wrap_retinaface_strides",
           "mark_wrapped"]

#: FaceFusion's channel order in, ffkit's out: indices of a Gather on the channel axis.
BGR_TO_RGB = (2, 1, 0)


def rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename the tensor ``old`` to ``new`` everywhere in ``graph`` (inputs, outputs, node inputs
    and outputs, value_info); subgraphs of control-flow nodes are not entered."""
    for coll in (graph.input, graph.output, graph.value_info):
        for value in coll:
            if value.name == old:
                value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _fresh(graph: onnx.GraphProto, base: str) -> str:
    """A tensor name starting with ``base`` that ``graph`` does not use yet."""
    used = {n for node in graph.node for n in (*node.input, *node.output)}
    used |= {v.name for v in (*graph.input, *graph.output, *graph.initializer)}
    name, k = base, 0
    while name in used:
        k += 1
        name = f"{base}_{k}"
    return name


def mark_wrapped(model: onnx.ModelProto, **record: str) -> None:
    """Drop ``ffkit.recipe`` (the I/O is no longer the recipe's) and record ``ffkit.facefusion``."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != "ffkit.recipe"]
    del model.metadata_props[:]
    for key, value in kept + [("ffkit.facefusion", json.dumps(record, sort_keys=True))]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def wrap_simswap_inputs(model: onnx.ModelProto, identity: str = "source_latent") -> onnx.ModelProto:
    """A copy of the SimSwap ``model`` whose identity input is named ``source``."""
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    names = [i.name for i in wrapped.graph.input]
    if identity not in names or "target" not in names:
        raise ValueError(f"expected inputs target and {identity}, found {', '.join(names)}")
    rename_tensor(wrapped.graph, identity, "source")
    return wrapped


class _Builder:
    """Appends nodes and constants to ``graph`` under fresh ``ffkit.ff.*`` names."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph, self.nodes = graph, []

    def const(self, base: str, value) -> str:
        name = _fresh(self.graph, f"ffkit.ff.{base}")
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = _fresh(self.graph, f"ffkit.ff.{base}")
        node = helper.make_node(op, inputs, [out], **attrs)
        self.nodes.append(node)
        self.graph.node.append(node)   # appended now so that _fresh sees the name
        return out


def _heatmap_decode(b: _Builder, heatmaps: str, height: int, width: int) -> str:
    """Nodes turning ``heatmaps`` (``N x K x H x W``) into ``N x K x 3`` (x, y, peak); its name."""
    flat = b.node("Reshape", [heatmaps, b.const("flat_shape", np.array([0, 0, -1], np.int64))], "flat")
    idx = b.node("ArgMax", [flat], "idx", axis=2, keepdims=1, select_last_index=0)
    peak = b.node("GatherElements", [flat, idx], "peak", axis=2)
    w = b.const("w", np.array(width, np.int64))
    col, row = b.node("Mod", [idx, w], "col"), b.node("Div", [idx, w], "row")
    last, zero_i, one_i = (b.const(k, np.array(v, np.int64)) for k, v in
                           (("last", height * width - 1), ("zero_i", 0), ("one_i", 1)))

    def within(value: str, size: int) -> str:
        low = b.node("Greater", [value, zero_i], "gt0")
        high = b.node("Less", [value, b.const("size_m1", np.array(size - 1, np.int64))], "ltm1")
        return b.node("And", [low, high], "within")

    inner = b.node("And", [within(col, width), within(row, height)], "inner")
    quarter, zero_f, half = (b.const(k, np.array(v, np.float32)) for k, v in
                             (("quarter", 0.25), ("zero_f", 0.0), ("half", 0.5)))
    coords = []
    for index, step in ((col, one_i), (row, w)):
        after = b.node("GatherElements", [flat, b.node("Min", [b.node("Add", [idx, step], "next"), last], "next_in")],
                       "after", axis=2)
        before = b.node("GatherElements", [flat, b.node("Max", [b.node("Sub", [idx, step], "prev"), zero_i],
                                                         "prev_in")], "before", axis=2)
        sign = b.node("Sign", [b.node("Sub", [after, before], "diff")], "sign")
        shift = b.node("Where", [inner, b.node("Mul", [sign, quarter], "shift"), zero_f], "shift_inner")
        plus1 = b.node("Cast", [b.node("Add", [index, one_i], "plus1")], "plus1_f", to=TensorProto.FLOAT)
        coords.append(b.node("Sub", [b.node("Add", [plus1, shift], "moved"), half], "coord"))
    return b.node("Concat", [*coords, peak], "points", axis=2)


def wrap_fan_points(model: onnx.ModelProto, input_name: str = "input", heatmaps: str = "heatmaps") -> onnx.ModelProto:
    """A copy of the 2D-FAN-4 ``model`` taking BGR / 255 and giving ``landmarks`` (N x 68 x 3:
    x, y in heatmap pixels and the peak) then ``heatmaps``, as FaceFusion's 2dfan4 slot does."""
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    graph = wrapped.graph
    if [i.name for i in graph.input] != [input_name] or heatmaps not in [o.name for o in graph.output]:
        raise ValueError(f"expected input {input_name} and output {heatmaps}")
    dims = [d.dim_value for d in next(o for o in graph.output if o.name == heatmaps).type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims[2:]):
        raise ValueError(f"output {heatmaps} must be N x K x H x W with fixed H and W, got {dims}")
    rgb = _fresh(graph, "ffkit.ff.rgb")
    rename_tensor(graph, input_name, rgb)
    graph.input[0].name = input_name
    order = _Builder(graph).const("bgr_to_rgb", np.array(BGR_TO_RGB, np.int64))
    graph.node.insert(0, helper.make_node("Gather", [input_name, order], [rgb], axis=1))
    points = _heatmap_decode(_Builder(graph), heatmaps, dims[2], dims[3])
    rename_tensor(graph, points, "landmarks")
    landmarks = helper.make_tensor_value_info("landmarks", TensorProto.FLOAT,
                                              [graph.output[0].type.tensor_type.shape.dim[0].dim_param or 1,
                                               dims[1], 3])
    kept = [o for o in graph.output if o.name == heatmaps]
    del graph.output[:]
    graph.output.extend([landmarks, *kept])
    return wrapped


def wrap_retinaface_strides(model: onnx.ModelProto) -> onnx.ModelProto:
    """The RetinaFace ``model`` as FaceFusion's ``retinaface`` slot reads it: input ``input``
    ``1 x 3 x H x W`` of ``(BGR - 127.5) / 128`` (any H, W multiple of 32), 9 outputs ``A_s x 1``
    scores, ``A_s x 4`` box distances, ``A_s x 10`` point offsets per stride 8, 16, 32 (stride
    units, anchors at ``(j s, i s)``, two per location), by
    :func:`ffkit.toolkit.detector_wrap.scrfd_from_retinaface`."""
    return scrfd_from_retinaface(model, pixels=FACEFUSION_PIXELS, batched=False, input_name="input")


#: Wrapper name (:attr:`ffkit.toolkit.facefusion.slots.Slot.wrapper`) -> function of the loaded artifact.
WRAPPERS = {"simswap_inputs": wrap_simswap_inputs, "fan_points": wrap_fan_points,
            "retinaface_strides": wrap_retinaface_strides}
