"""run_session: IO binding on device providers, the plain ``session.run`` on CPU (unchanged).

No GPU here: the device path is checked with a fake session that records the binding calls,
and the binding routine itself on a real CPU session bound to the host device."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from ffkit.runtime import sessions
from ffkit.runtime.sessions import SessionSettings, binding_device, create_session, run_bound, run_session


def affine_model():
    """y = x * 2 + b (b = [1, 2, 3] per channel), z = x - 1: two outputs to bind."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3])
    inits = [numpy_helper.from_array(np.float32(2.0), "two"), numpy_helper.from_array(np.float32(1.0), "one"),
             numpy_helper.from_array(np.array([1, 2, 3], np.float32), "b")]
    nodes = [helper.make_node("Mul", ["x", "two"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"]),
             helper.make_node("Sub", ["x", "one"], ["z"])]
    return helper.make_model(helper.make_graph(nodes, "affine", [x], [y, z], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


X = np.array([[0.5, -1.0, 4.0], [2.0, 0.0, -3.5]], np.float32)
WANT_Y = np.array([[2.0, 0.0, 11.0], [5.0, 2.0, -4.0]], np.float32)   # 2x + [1, 2, 3], by hand
WANT_Z = np.array([[-0.5, -2.0, 3.0], [1.0, -1.0, -4.5]], np.float32)  # x - 1


class _Port:
    def __init__(self, name):
        self.name = name


class FakeBinding:
    def __init__(self, log):
        self.log = log

    def bind_cpu_input(self, name, value):
        self.log.append(("bind_cpu_input", name, value.copy()))

    def bind_output(self, name, device_type="cpu", device_id=0):
        self.log.append(("bind_output", name, device_type, device_id))

    def copy_outputs_to_cpu(self):
        self.log.append(("copy_outputs_to_cpu",))
        return [WANT_Y, WANT_Z]

    def clear_binding_inputs(self):
        self.log.append(("clear_inputs",))

    def clear_binding_outputs(self):
        self.log.append(("clear_outputs",))


class FakeSession:
    """What run_session reads of an InferenceSession, with the providers and options given."""

    def __init__(self, providers, options=None):
        self.providers, self.options, self.log = list(providers), options or {}, []

    def get_providers(self):
        return self.providers

    def get_provider_options(self):
        return self.options

    def get_inputs(self):
        return [_Port("x")]

    def get_outputs(self):
        return [_Port("y"), _Port("z")]

    def io_binding(self):
        self.log.append(("io_binding",))
        return FakeBinding(self.log)

    def run_with_iobinding(self, binding, run_options=None):
        self.log.append(("run_with_iobinding",))

    def run(self, names, feeds):
        self.log.append(("run", tuple(names)))
        return [WANT_Y, WANT_Z]


@pytest.mark.parametrize("provider, device", [("CUDAExecutionProvider", ("cuda", 1)),
                                              ("TensorrtExecutionProvider", ("cuda", 1)),
                                              ("ROCMExecutionProvider", ("cuda", 1)),
                                              ("DmlExecutionProvider", ("dml", 1))])
def test_device_provider_runs_through_io_binding(provider, device):
    fake = FakeSession([provider, "CPUExecutionProvider"], {provider: {"device_id": "1"}})
    assert binding_device(fake) == device
    out = run_session(fake, {"x": X, "unused": np.zeros(1)})
    ops = [entry[0] for entry in fake.log]
    assert "run" not in ops                                       # not the plain path
    assert ops == ["io_binding", "bind_cpu_input", "bind_output", "bind_output", "run_with_iobinding",
                   "copy_outputs_to_cpu", "clear_inputs", "clear_outputs"]
    assert fake.log[1][1] == "x" and np.array_equal(fake.log[1][2], X)   # only the input the model takes
    assert fake.log[2][1:] == ("y", *device) and fake.log[3][1:] == ("z", *device)
    assert list(out) == ["y", "z"] and np.array_equal(out["y"], WANT_Y)


def test_cpu_session_keeps_plain_run():
    fake = FakeSession(["CPUExecutionProvider"])
    assert binding_device(fake) is None
    run_session(fake, {"x": X}, ["z"])
    assert fake.log == [("run", ("z",))]
    # a session whose device provider could not start (CPU first in what really runs) is a CPU one
    fallen = FakeSession(["CPUExecutionProvider"], {"CPUExecutionProvider": {}})
    run_session(fallen, {"x": X})
    assert [e[0] for e in fallen.log] == ["run"]


def test_real_cpu_session_outputs_unchanged(monkeypatch):
    session = create_session(affine_model(), SessionSettings(intra_op_threads=1))
    assert binding_device(session) is None

    def no_binding(*args, **kwargs):
        raise AssertionError("a CPU session must not be bound")

    monkeypatch.setattr(sessions, "run_bound", no_binding)
    out = run_session(session, {"x": X})
    np.testing.assert_array_equal(out["y"], WANT_Y)
    np.testing.assert_array_equal(out["z"], WANT_Z)
    plain = session.run(["y", "z"], {"x": X})
    np.testing.assert_array_equal(out["y"], plain[0])


def test_binding_routine_on_a_real_session_bound_to_the_host():
    """run_bound's onnxruntime calls (io_binding, bind_cpu_input, bind_output, run_with_iobinding,
    copy_outputs_to_cpu) on a real session, with the outputs bound to the CPU device."""
    session = create_session(affine_model(), SessionSettings(intra_op_threads=1))
    y, z = run_bound(session, {"x": X}, ["y", "z"], ("cpu", 0))
    np.testing.assert_array_equal(y, WANT_Y)
    np.testing.assert_array_equal(z, WANT_Z)
    (z_only,) = run_bound(session, {"x": X[:1]}, ["z"], ("cpu", 0))   # the binding is cleared between runs
    np.testing.assert_array_equal(z_only, WANT_Z[:1])
