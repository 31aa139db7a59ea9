"""Graph passes found by ``ffkit bench --profile``: exact rewrites of operators onnxruntime's CPU
kernels run far below what the arithmetic needs.

``rewrite_prelu``: onnxruntime's CPU ``PRelu`` with a per-channel slope (``[C, 1, 1]``) goes
through its generic broadcasting path, about 20x slower than a ``Mul`` of the same shape
(``1 x 64 x 56 x 56``: 950 us vs 48 us on the reference 2-core EPYC, ``docs/benchmarks.md``).
It costs 7-13 % of ArcFace IResNet's FP32 time and 40 % of its INT8 time. The rewrite is exact
(bit-identical outputs) for a constant slope ``s``:

* every ``s <= 1``: ``PRelu(x) = Max(x, x * s)``   (x >= 0: x >= s x; x < 0: s x >= x)
* every ``s >= 1``: ``PRelu(x) = Min(x, x * s)``
* mixed:           ``PRelu(x) = Relu(x) + Min(x, 0) * s``

A PRelu whose slope is not an initializer is left alone.

``unfuse_contrib_ops``: undoes onnxruntime's ``extended``-level fusions ``com.microsoft``
``FusedConv`` (Conv + optional residual Add + activation) and ``FusedGemm`` (Gemm + activation),
so an optimized artifact can be quantized: the quantizer has no rules for contrib ops. Exact: the same arithmetic as separate
nodes, which onnxruntime fuses again when it loads the result.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def rewrite_prelu(model: onnx.ModelProto) -> int:
    """Rewrite every PRelu with a constant slope in ``model`` (in place); returns how many."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    new_nodes, count = [], 0
    zero_name = None
    for node in graph.node:
        if node.op_type != "PRelu" or node.domain not in ("", "ai.onnx") or node.input[1] not in inits:
            new_nodes.append(node)
            continue
        slope = numpy_helper.to_array(inits[node.input[1]])
        x, s, y = node.input[0], node.input[1], node.output[0]
        base = node.name or y
        scaled = f"{base}/ffkit_prelu_scaled"
        if np.all(slope <= 1):
            new_nodes += [helper.make_node("Mul", [x, s], [scaled], name=f"{base}/ffkit_mul"),
                          helper.make_node("Max", [x, scaled], [y], name=f"{base}/ffkit_max")]
        elif np.all(slope >= 1):
            new_nodes += [helper.make_node("Mul", [x, s], [scaled], name=f"{base}/ffkit_mul"),
                          helper.make_node("Min", [x, scaled], [y], name=f"{base}/ffkit_min")]
        else:
            if zero_name is None:
                zero_name = "ffkit_prelu_zero"
                dtype = helper.tensor_dtype_to_np_dtype(inits[s].data_type)
                graph.initializer.append(numpy_helper.from_array(np.zeros((), dtype=dtype), zero_name))
            pos, neg = f"{base}/ffkit_prelu_pos", f"{base}/ffkit_prelu_neg"
            new_nodes += [helper.make_node("Relu", [x], [pos], name=f"{base}/ffkit_relu"),
                          helper.make_node("Min", [x, zero_name], [neg], name=f"{base}/ffkit_min"),
                          helper.make_node("Mul", [neg, s], [scaled], name=f"{base}/ffkit_mul"),
                          helper.make_node("Add", [pos, scaled], [y], name=f"{base}/ffkit_add")]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new_nodes)
    return count


#: FusedConv ``activation`` -> (ONNX op, names of its float attributes in ``activation_params`` order).
_ACTIVATIONS = {"Relu": ("Relu", ()), "Sigmoid": ("Sigmoid", ()), "Tanh": ("Tanh", ()),
                "LeakyRelu": ("LeakyRelu", ("alpha",)), "HardSigmoid": ("HardSigmoid", ("alpha", "beta")),
                "Clip": ("Clip", ())}


def _activation_node(graph: onnx.GraphProto, activation: str, params: list[float], x: str, y: str,
                     base: str) -> onnx.NodeProto:
    op, names = _ACTIVATIONS[activation]
    inputs = [x]
    if op == "Clip":
        for bound, value in zip(("min", "max"), params[:2]):
            name = f"{base}/ffkit_clip_{bound}"
            graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
            inputs.append(name)
    return helper.make_node(op, inputs, [y], name=f"{base}/ffkit_{op.lower()}", **dict(zip(names, params)))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def unfuse_contrib_ops(model: onnx.ModelProto) -> tuple[int, list[str]]:
    """Replace every ``com.microsoft`` ``FusedConv`` (Conv [+ Add of its 4th input] + activation)
    and ``FusedGemm`` (Gemm + activation) in ``model`` (in place) by those plain ONNX nodes.
    Returns ``(nodes unfused, contrib op types left)``."""
    graph = model.graph
    new_nodes, count = [], 0
    for node in graph.node:
        if node.domain != "com.microsoft" or node.op_type not in ("FusedConv", "FusedGemm"):
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        activation = _text(attrs.pop("activation", ""))
        if node.op_type == "FusedConv":
            params = list(attrs.pop("activation_params", []))
        else:  # FusedGemm: activation_alpha / _beta / _gamma
            params = [attrs.pop(k) for k in ("activation_alpha", "activation_beta", "activation_gamma") if k in attrs]
        if activation and activation not in _ACTIVATIONS:
            new_nodes.append(node)
            continue
        base, y = node.name or node.output[0], node.output[0]
        if node.op_type == "FusedConv":
            x, w, *rest = node.input
            bias, residual = (list(rest) + ["", ""])[:2]
            plain = [helper.make_node("Conv", [x, w] + ([bias] if bias else []), [f"{base}/ffkit_conv"],
                                      name=f"{base}/ffkit_conv", **attrs)]
            if residual:
                plain.append(helper.make_node("Add", [plain[-1].output[0], residual], [f"{base}/ffkit_sum"],
                                              name=f"{base}/ffkit_add"))
        else:
            plain = [helper.make_node("Gemm", list(node.input), [f"{base}/ffkit_gemm"], name=f"{base}/ffkit_gemm",
                                      **attrs)]
        if activation:
            plain.append(_activation_node(graph, activation, params, plain[-1].output[0], y, base))
        else:
            plain[-1].output[0] = y
        new_nodes += plain
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new_nodes)
    left = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")})
    if not left:
        kept = [o for o in model.opset_import if o.domain != "com.microsoft"]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return count, left


def apply_to_file(in_path: str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Read an ffkit artifact, rewrite its PRelus, record the pass in ``ffkit.history`` (stage
    ``prelu_rewrite``) and write it atomically; returns the number of nodes rewritten."""
    from ffkit.recipes import artifact, onnx_file

    model = onnx_file.load_onnx(in_path)
    count = rewrite_prelu(model)
    artifact.append_history(model, "prelu_rewrite", {}, {"rewritten": count})
    onnx_file.save_onnx(model, Path(out_path))
    return count
