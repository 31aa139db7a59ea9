"""The PRelu rewrite is exact: bit-identical outputs for slopes <= 1, >= 1 and mixed."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ffkit.toolkit.graph_passes import rewrite_prelu


def prelu_model(slope):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, len(slope), 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, len(slope), 5, 5])
    s = numpy_helper.from_array(np.asarray(slope, np.float32).reshape(-1, 1, 1), "s")
    graph = helper.make_graph([helper.make_node("PRelu", ["x", "s"], ["y"], name="p")], "g", [x], [y], [s])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("slope, ops", [([0.25, -0.5, 1.0], {"Mul", "Max"}), ([1.0, 2.5, 3.0], {"Mul", "Min"}),
                                        ([0.1, 2.0, -1.0], {"Relu", "Min", "Mul", "Add"})])
def test_prelu_rewrite_is_bit_exact(slope, ops):
    model = prelu_model(slope)
    x = np.random.default_rng(0).standard_normal((2, len(slope), 5, 5)).astype(np.float32)
    want = _run(model, x)
    assert rewrite_prelu(model) == 1
    assert {n.op_type for n in model.graph.node} == ops
    np.testing.assert_array_equal(_run(model, x), want)


@pytest.mark.parametrize("activation, params", [("Relu", []), ("LeakyRelu", [0.1]), ("Clip", [-0.5, 0.7]),
                                                ("Sigmoid", []), ("", [])])
def test_unfused_contrib_ops_compute_what_onnxruntime_fused(activation, params):
    """FusedConv (with a residual input) and FusedGemm, as onnxruntime writes them at ``extended``,
    against the plain nodes they stand for, evaluated in numpy."""
    from ffkit.toolkit.graph_passes import unfuse_contrib_ops

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    g = rng.normal(size=(6, 4 * 5 * 5)).astype(np.float32)
    act = {"activation": activation} if activation else {}
    conv_params = {"activation_params": params} if params else {}
    gemm_params = dict(zip(("activation_alpha", "activation_beta"), params)) if params else {}
    nodes = [helper.make_node("FusedConv", ["x", "w", "b", "z"], ["c"], domain="com.microsoft", pads=[1, 1, 1, 1],
                              **act, **conv_params),
             helper.make_node("Flatten", ["c"], ["f"]),
             # onnxruntime fuses Gemm with Relu/LeakyRelu/Sigmoid/Tanh only (its kernel refuses the rest)
             helper.make_node("FusedGemm", ["f", "g"], ["y"], domain="com.microsoft", transB=1, **act, **gemm_params)
             if activation in ("Relu", "LeakyRelu", "Sigmoid") else
             helper.make_node("Gemm", ["f", "g"], ["g_out"], transB=1)]
    if nodes[-1].op_type == "Gemm":
        nodes.append(helper.make_node({"": "Identity"}.get(activation, activation), ["g_out"] + (
            ["clip_lo", "clip_hi"] if activation == "Clip" else []), ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5]),
                                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
                               numpy_helper.from_array(g, "g"), numpy_helper.from_array(np.float32(-0.5), "clip_lo"),
                               numpy_helper.from_array(np.float32(0.7), "clip_hi")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    fused = model.SerializeToString()
    count, left = unfuse_contrib_ops(model)
    assert (count, left) == (1 + (nodes[2].op_type == "FusedGemm"), []) and {n.domain for n in model.graph.node} == {""}
    x = rng.normal(size=(1, 3, 5, 5)).astype(np.float32)
    z = rng.normal(size=(1, 4, 5, 5)).astype(np.float32)
    fn = {"Relu": lambda v: np.maximum(v, 0), "LeakyRelu": lambda v: np.where(v > 0, v, 0.1 * v),
          "Clip": lambda v: np.clip(v, -0.5, 0.7), "Sigmoid": lambda v: 1 / (1 + np.exp(-v)), "": lambda v: v}[activation]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.einsum("nchwij,ocij->nohw", np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3)), w)
    want = fn(fn(conv + b[None, :, None, None] + z).reshape(1, -1) @ g.T)
    for graph_bytes in (fused, model.SerializeToString()):   # onnxruntime's own fused kernels, then ours
        sess = ort.InferenceSession(graph_bytes, providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"x": x, "z": z})[0], want, rtol=1e-4, atol=1e-4)
