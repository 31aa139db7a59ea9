"""The FLOP counter against hand-computed values on tiny handmade graphs (multiply-add = 2 FLOPs)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ffkit.recipes.errors import FfkitError
from ffkit.validation.flops import count_flops


def _init(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def _model(nodes, inputs, outputs, inits, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def conv_gemm_graph():
    """x[N,3,8,8] -> conv 3x3 pad1 (4 ch) -> grouped conv stride2 (g=2) -> dilated conv
    -> flatten -> gemm(transB) -> matmul; and a convtranspose branch."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    m = helper.make_tensor_value_info("m", TensorProto.FLOAT, ["N", 6])
    t = helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N", 2, 8, 8])
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="conv2", group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w3"], ["c3"], name="conv3", dilations=[2, 2]),
        helper.make_node("Flatten", ["c2"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["g"], name="gemm", transB=1),
        helper.make_node("MatMul", ["g", "wm"], ["m"], name="matmul"),
        helper.make_node("ConvTranspose", ["c2", "wt"], ["t"], name="deconv", strides=[2, 2]),
    ]
    inits = [_init("w1", [4, 3, 3, 3]), _init("b1", [4]), _init("w2", [4, 2, 3, 3]), _init("w3", [5, 4, 3, 3]),
             _init("wg", [8, 64]), _init("bg", [8]), _init("wm", [8, 6]), _init("wt", [4, 1, 2, 2])]
    c3 = helper.make_tensor_value_info("c3", TensorProto.FLOAT, ["N", 5, 4, 4])
    return _model(nodes, [x], [m, t, c3], inits)


# Hand computed, per sample (N=1):
CONV1 = 2 * 4 * 8 * 8 * 3 * 3 * 3          # out 4x8x8, each a 3x3x3 dot:        13824
CONV2 = 2 * 4 * 4 * 4 * (4 // 2) * 3 * 3   # g=2, stride 2 -> 4x4x4, C/g=2:       2304
CONV3 = 2 * 5 * 4 * 4 * 4 * 3 * 3          # dilation 2, no pad: 8-4 = 4x4 out:   5760
GEMM = 2 * 1 * 8 * 64                      # [1,64] x [64,8]:                     1024
MATMUL = 2 * 1 * 8 * 6                     # [1,8] x [8,6]:                       96
DECONV = 2 * (4 * 4) * (4 * 1 * 2 * 2)     # 16 input px x 4 ch each scatter 1x2x2: 512


def test_conv_gemm_matmul_convtranspose_hand_values():
    fc = count_flops(conv_gemm_graph(), {"N": 1})
    per_node = {name: f for name, _, f in fc.by_node}
    assert per_node == {"conv1": CONV1, "conv2": CONV2, "conv3": CONV3, "gemm": GEMM, "matmul": MATMUL, "deconv": DECONV}
    assert fc.total == CONV1 + CONV2 + CONV3 + GEMM + MATMUL + DECONV
    assert fc.by_op == {"Conv": CONV1 + CONV2 + CONV3, "Gemm": GEMM, "MatMul": MATMUL, "ConvTranspose": DECONV}


def test_dynamic_batch_scales_linearly():
    one = count_flops(conv_gemm_graph(), {"N": 1}).total
    assert count_flops(conv_gemm_graph(), {"N": 3}).total == 3 * one
    assert count_flops(conv_gemm_graph(), shapes={"x": [5, 3, 8, 8]}).total == 5 * one


def test_unbound_dynamic_axis_is_a_one_line_error():
    with pytest.raises(FfkitError, match="dynamic"):
        count_flops(conv_gemm_graph(), {})


def test_batched_matmul_broadcasts():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = _model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], [a], [y], [_init("b", [5, 6])])
    assert count_flops(model).total == 2 * (2 * 3) * 4 * 5 * 6


def test_gemm_transposed_a():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [16, 2])  # transA: M=2, K=16
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = _model([helper.make_node("Gemm", ["a", "b"], ["y"], transA=1)], [a], [y], [_init("b", [16, 7])])
    assert count_flops(model).total == 2 * 2 * 7 * 16


def test_shapes_unknown_to_inference_come_from_onnxruntime():
    # The conv input's shape goes through Abs, which ONNX data propagation does not follow, so
    # static inference leaves it unknown; onnxruntime runs the graph once and reads it back.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 48])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 2, 2])
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
             helper.make_node("Concat", ["n", "rest"], ["shape0"], axis=0),
             helper.make_node("Abs", ["shape0"], ["shape"]),
             helper.make_node("Reshape", ["x", "shape"], ["x4"]),
             helper.make_node("Conv", ["x4", "w"], ["y"], name="conv")]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([3, 4, 4], np.int64), "rest"), _init("w", [2, 3, 3, 3])]
    model = _model(nodes, [x], [y], inits)
    onnx.checker.check_model(model)
    fc = count_flops(model, {"N": 2})
    assert "onnxruntime" in fc.shapes_from
    assert fc.total == 2 * 2 * 2 * 2 * 2 * 3 * 3 * 3  # N=2, out 2 ch x 2x2, 3x3x3 kernel
    with pytest.raises(FfkitError, match="unknown"):
        count_flops(model, {"N": 2}, allow_ort=False)
