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
