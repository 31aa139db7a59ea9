"""The detector interface: RetinaFace through it gives detect.py's numbers, a second family is
one module plus one table entry (a toy family registered here, run by ``open_detector`` and by
``ffkit detect``), and the runtime reads no detector family's recipe internals."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ffkit.recipes import REGISTRY, get_recipe
from ffkit.recipes.errors import FfkitError
from ffkit.recipes.spec import DetectorDecode, PixelFormat, Recipe, TensorSpec, Tolerance
from ffkit.runtime.detection import DetectParams, Detections, FaceDetector, Placement
from ffkit.runtime.detector import Detector
from ffkit.runtime.detectors import FAMILIES, open_detector
from ffkit.runtime.detectors.retinaface import RetinaFaceDetector
from ffkit.runtime.retinaface_decode import detect_faces
from ffkit.runtime.sessions import create_session

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).resolve().parent / "data" / "reference" / "retinaface_mobilenet0.25.seed0.npz"


class ReplaySession:
    """A session stand-in: records the tensor it is fed and answers fixed outputs."""

    class _Arg:
        def __init__(self, name: str, type_: str = "tensor(float)"):
            self.name, self.type = name, type_

    def __init__(self, outputs: Sequence[np.ndarray], input_name: str = "input",
                 output_names: Sequence[str] = ("loc", "conf", "landms")):
        self.outputs, self.fed = list(outputs), []
        self._inputs, self._outputs = [self._Arg(input_name)], [self._Arg(n) for n in output_names]

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def run(self, names, feeds):
        self.fed.append(feeds[self._inputs[0].name])
        return list(self.outputs)


# ---------------------------------------------------------------- an independent detect.py decode


def _priors(h: int, w: int) -> np.ndarray:
    """PriorBox of cfg_mnet written out as loops (min sizes, steps and order as data/config.py)."""
    out = []
    for sizes, step in zip(((16, 32), (64, 128), (256, 512)), (8, 16, 32)):
        for i in range(math.ceil(h / step)):
            for j in range(math.ceil(w / step)):
                for m in sizes:
                    out.append([(j + 0.5) * step / w, (i + 0.5) * step / h, m / w, m / h])
    return np.array(out, np.float64)


def _reference_decode(loc, conf, landms, h, w, threshold, nms_threshold=0.4):
    """detect.py in float64: decode, keep score > threshold, py_cpu_nms ("+1"), by score."""
    p = _priors(h, w)
    c = p[:, :2] + loc[:, :2] * 0.1 * p[:, 2:]
    s = p[:, 2:] * np.exp(loc[:, 2:] * 0.2)
    boxes = np.concatenate([c - s / 2, c + s / 2], 1) * [w, h, w, h]
    lm = (p[:, None, :2] + landms.reshape(-1, 5, 2) * 0.1 * p[:, None, 2:]) * [w, h]
    scores = conf[:, 1].astype(np.float64)
    idx = np.where(scores > threshold)[0]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    keep = []
    for i in idx:
        ok = True
        for k in keep:
            xx1, yy1 = max(boxes[i, 0], boxes[k, 0]), max(boxes[i, 1], boxes[k, 1])
            xx2, yy2 = min(boxes[i, 2], boxes[k, 2]), min(boxes[i, 3], boxes[k, 3])
            inter = max(0.0, xx2 - xx1 + 1) * max(0.0, yy2 - yy1 + 1)
            area = lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1)  # noqa: E731
            if inter / (area(boxes[i]) + area(boxes[k]) - inter) > nms_threshold:
                ok = False
                break
        if ok:
            keep.append(i)
    return boxes[keep], scores[keep], lm[keep]


@pytest.fixture(scope="module")
def reference():
    data = np.load(REFERENCE)
    return data["input_0"], [data[f"output_{k}"] for k in range(3)]


def test_retinaface_recipe_declares_its_decode():
    for name in ("retinaface_mobilenet0.25", "retinaface_resnet50"):
        spec = get_recipe(name).detector_decode
        assert spec == DetectorDecode("retinaface", strides=(8, 16, 32),
                                      anchor_sizes=((16, 32), (64, 128), (256, 512)), variances=(0.1, 0.2))
    assert FAMILIES["retinaface"] is RetinaFaceDetector


def test_retinaface_decode_equals_detect_py_on_reference_outputs(reference):
    """The interface's decode of the seed-0 reference outputs (320 x 320): exactly the decode the
    runtime had (detect_faces), and detect.py written out in float64 to float32 rounding."""
    _, outs = reference
    det = open_detector(get_recipe("retinaface_mobilenet0.25"), None)   # decode only, no session
    assert isinstance(det, RetinaFaceDetector)
    params = DetectParams(max_side=0, score_threshold=0.8, nms_threshold=0.4)
    got = det.decode(outs, Placement.identity(320, 320), params)
    old = detect_faces(*outs, 320, 320, score_threshold=0.8, nms_threshold=0.4, top_k=5000, keep_top_k=750)
    np.testing.assert_array_equal(got.as_dets(), old.as_dets())
    boxes, scores, lm = _reference_decode(outs[0][0].astype(np.float64), outs[1][0], outs[2][0].astype(np.float64),
                                          320, 320, 0.8)
    assert len(got) == len(scores) > 3
    np.testing.assert_allclose(got.scores, scores, rtol=0, atol=0)
    np.testing.assert_allclose(got.boxes, boxes, atol=2e-3)
    np.testing.assert_allclose(got.landmarks, lm, atol=2e-3)


def test_retinaface_detect_feeds_bgr_minus_mean_and_maps_resized_input_back(reference):
    """detect() on a 640 x 640 image with max_side 320: the fed tensor is the bilinear 320 x 320
    resize as BGR minus (104, 117, 123), and input pixel u maps to (u + 0.5) * 2 - 0.5."""
    _, outs = reference
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (640, 640, 3), dtype=np.uint8)
    session = ReplaySession(outs)
    det = open_detector(get_recipe("retinaface_mobilenet0.25"), session)
    got = det.detect(image, DetectParams(max_side=320, score_threshold=0.8))
    small = cv2.resize(image, (320, 320), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    expect = (small - np.array([104, 117, 123], np.float32)).transpose(2, 0, 1)[None]
    np.testing.assert_array_equal(session.fed[0], expect)
    boxes, scores, lm = _reference_decode(outs[0][0].astype(np.float64), outs[1][0], outs[2][0].astype(np.float64),
                                          320, 320, 0.8)
    assert len(got) == len(scores) > 3
    np.testing.assert_allclose(got.boxes, (boxes + 0.5) * 2 - 0.5, atol=4e-3)
    np.testing.assert_allclose(got.landmarks, (lm + 0.5) * 2 - 0.5, atol=4e-3)
    # Detector(session), the name callers hold, is the same implementation with the same numbers
    same = Detector(ReplaySession(outs)).detect(image, DetectParams(max_side=320, score_threshold=0.8))
    np.testing.assert_array_equal(same.as_dets(), got.as_dets())


def test_raw_keys_outputs_by_the_recipe_names(reference):
    """raw() returns the outputs in file order keyed by the recipe's names, whatever the file
    calls them (``landmarks`` in some exports)."""
    _, outs = reference
    det = Detector(ReplaySession(outs, output_names=("o0", "o1", "landmarks")))
    raw = det.raw(np.zeros((320, 320, 3), np.uint8))
    assert list(raw) == ["loc", "conf", "landms"]
    for k, name in enumerate(raw):
        np.testing.assert_array_equal(raw[name], outs[k])


# ---------------------------------------------------------------- a second family in one module


class ToyDetector(FaceDetector):
    """A toy family: fit into the declared input size keeping the aspect (``int()``), top-left,
    zero padding; the network emits rows ``[x1, y1, x2, y2, score, 5 x (x, y)]`` in input pixels."""

    def size(self, image, params):
        in_h, in_w = self.spec.input_size
        scale = min(in_h / image.shape[0], in_w / image.shape[1])
        h, w = int(image.shape[0] * scale), int(image.shape[1] * scale)
        canvas = np.zeros((in_h, in_w, 3), np.uint8)
        canvas[:h, :w] = cv2.resize(image, (w, h))
        return canvas, Placement(image.shape[:2], (in_h, in_w), (h, w))

    def decode(self, outputs, placement, params):
        rows = outputs[0][0]
        rows = rows[rows[:, 4] > params.score_threshold]
        scale = placement.content_hw[0] / placement.image_hw[0]
        keep = self.suppress(rows[:, :4], rows[:, 4], params.nms_threshold)
        rows = rows[keep]
        return Detections(boxes=rows[:, :4] / scale, scores=rows[:, 4],
                          landmarks=(rows[:, 5:] / scale).reshape(-1, 5, 2))


ROWS = np.array([[4, 4, 20, 20, 0.9, 8, 9, 16, 9, 12, 12, 9, 16, 15, 16],
                 [5, 5, 21, 21, 0.8, 8, 9, 16, 9, 12, 12, 9, 16, 15, 16],     # overlaps the first: suppressed
                 [30, 2, 40, 14, 0.7, 32, 5, 38, 5, 35, 8, 33, 11, 37, 11],
                 [0, 0, 8, 8, 0.3, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]], np.float32)   # below the threshold

TOY = Recipe(
    name="toy_detector", family="toy", role="detector", summary="a toy detector emitting fixed faces",
    inputs=(TensorSpec("image", (1, 3, 32, 48)),),
    outputs=(TensorSpec("faces", (1, 4, 15)), TensorSpec("mean", (1,))),
    architecture="none:none", tolerance=Tolerance(atol=1e-4, rtol=1e-4),
    pixels=PixelFormat(colour="RGB", mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0)),
    detector_decode=DetectorDecode("toy", input_size=(32, 48)),
)


def _toy_onnx(path: Path) -> Path:
    """A graph answering ROWS whatever it is fed, and the mean of its input."""
    rows = helper.make_tensor("rows", TensorProto.FLOAT, (1, 4, 15), ROWS.ravel().tolist())
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["faces"], value=rows),
         helper.make_node("ReduceMean", ["image"], ["mean4"], keepdims=0),
         helper.make_node("Reshape", ["mean4", "one"], ["mean"])],
        "toy", [helper.make_tensor_value_info("image", TensorProto.FLOAT, (1, 3, 32, 48))],
        [helper.make_tensor_value_info("faces", TensorProto.FLOAT, (1, 4, 15)),
         helper.make_tensor_value_info("mean", TensorProto.FLOAT, (1,))],
        initializer=[helper.make_tensor("one", TensorProto.INT64, (1,), [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"ffkit.recipe": "toy_detector", "ffkit.variant": "fp32"})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _expected_toy_faces(image_h: int) -> np.ndarray:
    """The rows above 0.5 after NMS, mapped back: an image ``image_h`` high is fitted at 32 / image_h."""
    scale = 32 / image_h
    kept = ROWS[[0, 2]]
    return np.concatenate([kept[:, :4] / scale, kept[:, 4:5], kept[:, 5:] / scale], 1)


@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setitem(FAMILIES, "toy", ToyDetector)
    monkeypatch.setitem(REGISTRY, "toy_detector", TOY)


def test_open_detector_dispatches_by_the_recipe_decode(toy_family, tmp_path):
    session = create_session(_toy_onnx(tmp_path / "toy.onnx"))
    det = open_detector(TOY, session)
    assert type(det) is ToyDetector and det.spec.input_size == (32, 48)
    image = np.full((64, 64, 3), 200, np.uint8)   # fitted at 0.5 into 32 x 32, then 32 x 16 of zeros
    got = det.detect(image, DetectParams(score_threshold=0.5, nms_threshold=0.4))
    np.testing.assert_allclose(got.as_dets(), _expected_toy_faces(64), rtol=1e-6)
    # normalised as the toy recipe says: (x - 127.5) / 128, the zero padding included
    _, mean = det.forward(det.normalise(det.size(image, DetectParams())[0]))
    expect = ((200 - 127.5) / 128 * (32 * 32) + (0 - 127.5) / 128 * (32 * 16)) / (32 * 48)
    np.testing.assert_allclose(mean, [expect], rtol=1e-6)


def test_open_detector_refuses_an_unknown_decoder_in_one_line(tmp_path):
    class Ref:   # what the runtime's model picker hands over: a path and a recipe
        path, recipe = tmp_path / "toy.onnx", TOY

    with pytest.raises(FfkitError, match=r"toy\.onnx: no detector decodes 'toy' outputs \(known: .*retinaface"):
        open_detector(Ref(), ReplaySession([]))
    with pytest.raises(FfkitError, match="arcface_iresnet50 is not a face detector"):
        open_detector(get_recipe("arcface_iresnet50"), ReplaySession([]))


def test_ffkit_detect_runs_a_registered_family(toy_family, tmp_path):
    from cli_helpers import ffkit

    from ffkit.runtime.media import write_image

    image = tmp_path / "wide.png"
    write_image(image, np.full((64, 96, 3), 90, np.uint8))
    result = ffkit("detect", image, "--detector", _toy_onnx(tmp_path / "toy.onnx"), "--json", tmp_path / "f.json",
                   "--providers", "cpu")
    assert result.exit_code == 0, result.output
    faces = json.loads((tmp_path / "f.json").read_text())["images"][0]["faces"]
    rows = [[*f["box"], f["score"], *np.ravel(f["landmarks"])] for f in faces]
    np.testing.assert_allclose(np.array(rows), _expected_toy_faces(64), rtol=1e-6)
    assert "toy_detector" in result.output


# ---------------------------------------------------------------- the runtime knows no family's recipe


def test_runtime_imports_no_detector_family_recipe():
    """No runtime module imports a detector family's recipe package (recipes.retinaface, ...):
    the runtime reads a detector's constants from its Recipe declaration only."""
    families = {r.family for r in REGISTRY.values() if r.role == "detector"}
    assert "retinaface" in families
    wrong = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if isinstance(node, ast.ImportFrom) and node.module == "ffkit.recipes":
                names += [f"ffkit.recipes.{a.name}" for a in node.names]
            wrong += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                      if n.split(".")[:3] in (["ffkit", "recipes", f] for f in families)]
    assert not wrong, wrong
