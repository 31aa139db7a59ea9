"""Provider options on CPU with a fake provider list: parsed, checked, merged with the defaults,
and handed to ``onnxruntime.InferenceSession(..., providers=[(name, {...})])``; the spinning rule."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cli_helpers import assert_one_line_error, ffkit
from onnx import TensorProto, helper

from ffkit.recipes.errors import FfkitError
from ffkit.runtime import provider_options as po
from ffkit.runtime.sessions import SessionPool, default_spinning, resolve_providers

FAKE = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def tiny_model(path):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Fake GPU providers; InferenceSession replaced by a recorder of its ``providers`` argument."""
    calls = []

    class FakeSession:
        def __init__(self, source, options=None, providers=None):
            calls.append(providers)
            self._names = [p[0] if isinstance(p, tuple) else p for p in providers]

        def get_providers(self):
            return self._names

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(FAKE))
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(po, "_DIGESTS", {})
    return calls


def test_options_and_defaults_reach_inference_session(captured, tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    user = po.parse_provider_options(["cuda:device_id=1", "TRT:trt_fp16_enable=off",
                                      "tensorrt:trt_builder_optimization_level=5"])
    pool = SessionPool(resolve_providers("tensorrt"), provider_options=user)
    session = pool.get(model)
    folder = str(tmp_path / "cache" / "ffkit" / "tensorrt" / f"ort{ort.__version__}" / sha[:16])
    assert captured == [[
        ("TensorrtExecutionProvider", {"trt_fp16_enable": "0", "trt_engine_cache_enable": "1",
                                       "trt_timing_cache_enable": "1", "trt_max_workspace_size": str(2 * 1024 ** 3),
                                       "trt_engine_cache_path": folder, "trt_timing_cache_path": folder,
                                       "trt_builder_optimization_level": "5"}),
        ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE", "device_id": "1"}),
        "CPUExecutionProvider"]]
    assert os.path.isdir(folder)
    # what the CLI prints comes from the session, not from the request
    assert pool.loaded() == [(str(model.resolve()), tuple(FAKE))]
    assert session.get_providers() == FAKE


def test_cuda_default_alone_and_cpu_untouched(captured, tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    SessionPool(resolve_providers("cuda")).get(model)
    SessionPool(resolve_providers("cpu")).get(model)
    assert captured == [[("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE"}), "CPUExecutionProvider"],
                        ["CPUExecutionProvider"]]


def test_model_digest_cached_by_path_size_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(po, "_DIGESTS", {})
    path = tmp_path / "m.bin"
    path.write_bytes(b"a" * 1000)
    first = po.model_digest(path)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest()
    st = path.stat()
    path.write_bytes(b"b" * 1000)                        # same size, mtime put back: not re-read
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    monkeypatch.setattr(po, "_DIGESTS", {})              # a new start: the on-disk cache answers
    assert po.model_digest(path) == first
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))   # touched: hashed again
    assert po.model_digest(path) == hashlib.sha256(b"b" * 1000).hexdigest()


@pytest.mark.parametrize("spec, fragments", [
    ("cuda", ["expected PROVIDER:KEY=VALUE"]),
    ("vulkan:device_id=0", ["unknown provider 'vulkan'"]),
    ("cuda:trt_fp16_enable=1", ["CUDAExecutionProvider has no option 'trt_fp16_enable'", "cudnn_conv_algo_search"]),
    ("cuda:cudnn_conv_algo_search=FAST", ["bad value 'FAST'", "EXHAUSTIVE | HEURISTIC | DEFAULT"]),
    ("cuda:device_id=-1", ["bad value '-1'", "integer >= 0"]),
    ("trt:trt_fp16_enable=maybe", ["bad value 'maybe'", "boolean"]),
    ("coreml:MLComputeUnits=GPU", ["bad value 'GPU'", "CPUAndGPU"]),
])
def test_bad_options_one_line(spec, fragments):
    with pytest.raises(FfkitError) as info:
        po.parse_provider_options([spec])
    text = str(info.value)
    assert "\n" not in text and f"--provider-option {spec!r}" in text
    for fragment in fragments:
        assert fragment in text


def test_values_normalised():
    assert po.parse_provider_options(["openvino:device_type=GPU.0", "openvino:precision=fp16",
                                      "directml:device_id=2", "coreml:ModelFormat=mlprogram"]) == (
        ("OpenVINOExecutionProvider", (("device_type", "GPU.0"), ("precision", "FP16"))),
        ("DmlExecutionProvider", (("device_id", "2"),)),
        ("CoreMLExecutionProvider", (("ModelFormat", "MLProgram"),)))


def test_cli_detect_refuses_unknown_key(tmp_path):
    result = ffkit("detect", tmp_path / "a.jpg", "--detector", tmp_path / "d.onnx",
                   "--provider-option", "cuda:gpu_memory=1")
    assert_one_line_error(result, "--provider-option 'cuda:gpu_memory=1'", "has no option 'gpu_memory'")


def test_spinning_rule():
    assert default_spinning(workers=2, cores=16, load=0.0) is False          # several sessions at once
    assert default_spinning(workers=1, cores=2, load=1.5) is False           # 1.5 > 0.5 * 2: shared
    assert default_spinning(workers=1, cores=2, load=0.9) is None            # 0.9 <= 1.0: onnxruntime's default
    np.testing.assert_equal(default_spinning(workers=1, cores=8, load=4.0), None)   # exactly half: not busy
