"""fan_2dfan4: face_alignment's crop and heatmap decode, the 68 -> 5 points, and the checkpoint layouts.

The decode and the crop are checked against literal numpy/torch transcriptions of
1adrianb/face-alignment ``utils.py`` (``get_preds_fromhm``, ``_get_preds_fromhm``,
``transform_np``, ``transform``, ``crop``) written out below, and against hand computations.
The loader is checked on the seed-0 weights in each published layout, TorchScript included.
"""

from __future__ import annotations

import functools
import json
import math
import pickle
import re
import struct
import zipfile

import cv2
import numpy as np
import onnx
import pytest
import reference
import torch
from onnx import TensorProto, helper, numpy_helper

from ffkit.recipes import get_recipe, torchscript_archive
from ffkit.recipes.checkpoint import load_checkpoint, read_state_dict
from ffkit.recipes.errors import CheckpointError
from ffkit.recipes.fan.arch import ConvBlock
from ffkit.runtime.landmarker import (
    FLIP_PAIRS,
    Landmarker,
    crop_face,
    crop_window,
    decode_heatmaps,
    face_center_scale,
    flip_heatmaps,
    heatmap_to_image,
    landmarks_68_to_5,
)
from ffkit.runtime.sessions import create_session

NAME = "fan_2dfan4"


# --------------------------------------------------------------------------- face_alignment, transcribed


def fa_transform_np(point, center, scale, resolution, invert=False):
    """face_alignment utils.transform_np (numba-jitted there), line by line."""
    _pt = np.ones(3)
    _pt[0] = point[0]
    _pt[1] = point[1]
    h = 200.0 * scale
    t = np.eye(3)
    t[0, 0] = resolution / h
    t[1, 1] = resolution / h
    t[0, 2] = resolution * (-center[0] / h + 0.5)
    t[1, 2] = resolution * (-center[1] / h + 0.5)
    if invert:
        t = np.ascontiguousarray(np.linalg.pinv(t))
    new_point = np.dot(t, _pt)[0:2]
    return new_point.astype(np.int32)


def fa_get_preds_fromhm(hm, center=None, scale=None):
    """face_alignment utils.get_preds_fromhm + _get_preds_fromhm, line by line (loops as there)."""
    B, C, H, W = hm.shape
    hm_reshape = hm.reshape(B, C, H * W)
    idx = np.argmax(hm_reshape, axis=-1)
    scores = np.take_along_axis(hm_reshape, np.expand_dims(idx, axis=-1), axis=-1).squeeze(-1)
    idx = idx + 1
    preds = idx.repeat(2).reshape(B, C, 2).astype(np.float32)
    preds[:, :, 0] = (preds[:, :, 0] - 1) % W + 1
    preds[:, :, 1] = np.floor((preds[:, :, 1] - 1) / H) + 1
    for i in range(B):
        for j in range(C):
            hm_ = hm[i, j, :]
            pX, pY = int(preds[i, j, 0]) - 1, int(preds[i, j, 1]) - 1
            if pX > 0 and pX < 63 and pY > 0 and pY < 63:
                diff = np.array([hm_[pY, pX + 1] - hm_[pY, pX - 1], hm_[pY + 1, pX] - hm_[pY - 1, pX]])
                preds[i, j] += np.sign(diff) * 0.25
    preds -= 0.5
    preds_orig = np.zeros_like(preds)
    if center is not None and scale is not None:
        for i in range(B):
            for j in range(C):
                preds_orig[i, j] = fa_transform_np(preds[i, j], center, scale, H, True)
    return preds, preds_orig, scores


def fa_transform(point, center, scale, resolution, invert=False):
    """face_alignment utils.transform (torch, float32), line by line."""
    _pt = torch.ones(3)
    _pt[0] = point[0]
    _pt[1] = point[1]
    h = 200.0 * scale
    t = torch.eye(3)
    t[0, 0] = resolution / h
    t[1, 1] = resolution / h
    t[0, 2] = resolution * (-center[0] / h + 0.5)
    t[1, 2] = resolution * (-center[1] / h + 0.5)
    if invert:
        t = torch.inverse(t)
    new_point = (torch.matmul(t, _pt))[0:2]
    return new_point.int()


def fa_crop(image, center, scale, resolution=256.0):
    """face_alignment utils.crop, line by line (3-channel images)."""
    ul = fa_transform([1, 1], center, scale, resolution, True)
    br = fa_transform([resolution, resolution], center, scale, resolution, True)
    new_img = np.zeros(np.array([br[1] - ul[1], br[0] - ul[0], image.shape[2]], dtype=np.int32), dtype=np.uint8)
    ht, wd = image.shape[0], image.shape[1]
    new_x = np.array([max(1, -ul[0] + 1), min(br[0], wd) - ul[0]], dtype=np.int32)
    new_y = np.array([max(1, -ul[1] + 1), min(br[1], ht) - ul[1]], dtype=np.int32)
    old_x = np.array([max(1, ul[0] + 1), min(br[0], wd)], dtype=np.int32)
    old_y = np.array([max(1, ul[1] + 1), min(br[1], ht)], dtype=np.int32)
    new_img[new_y[0] - 1:new_y[1], new_x[0] - 1:new_x[1]] = image[old_y[0] - 1:old_y[1], old_x[0] - 1:old_x[1], :]
    return cv2.resize(new_img, dsize=(int(resolution), int(resolution)), interpolation=cv2.INTER_LINEAR)


def fa_center_scale(d, reference_scale):
    """face_alignment api.get_landmarks_from_image's centre and scale of one box."""
    center = np.array([d[2] - (d[2] - d[0]) / 2.0, d[3] - (d[3] - d[1]) / 2.0])
    center[1] = center[1] - (d[3] - d[1]) * 0.12
    return center, (d[2] - d[0] + d[3] - d[1]) / reference_scale


# --------------------------------------------------------------------------- decode


def _peak_maps() -> tuple[np.ndarray, list]:
    """One 64 x 64 map per hand-made case, with the decoded (x, y) in heatmap pixels worked out by hand."""
    cases = []

    def case(cells, expected):
        hm = np.zeros((64, 64), np.float32)
        for (r, c), v in cells.items():
            hm[r, c] = v
        cases.append((hm, expected))

    # interior peak (row 10, col 20): x = col + 1 -/+ 0.25 - 0.5, y = row + 1 -/+ 0.25 - 0.5
    case({(10, 20): 5, (10, 21): 2, (10, 19): 1, (11, 20): 3, (9, 20): 1}, (20.75, 10.75))   # right and down larger
    case({(10, 20): 5, (10, 21): 1, (10, 19): 2, (11, 20): 1, (9, 20): 3}, (20.25, 10.25))   # left and up larger
    case({(10, 20): 5, (10, 21): 2, (10, 19): 2, (11, 20): 3, (9, 20): 3}, (20.5, 10.5))     # equal: no shift
    case({(30, 40): 1.0, (30, 41): -0.5, (30, 39): -0.25}, (40.25, 30.5))                   # left less negative
    # peaks on the border ring are not shifted, whatever their neighbours
    case({(0, 20): 5, (0, 21): 4, (1, 20): 4}, (20.5, 0.5))
    case({(63, 20): 5, (63, 19): 4, (62, 20): 4}, (20.5, 63.5))
    case({(30, 0): 5, (30, 1): 4, (31, 0): 4}, (0.5, 30.5))
    case({(30, 63): 5, (30, 62): 4, (29, 63): 4}, (63.5, 30.5))
    case({(63, 63): 5, (62, 62): 4}, (63.5, 63.5))
    case({(1, 1): 5, (1, 2): 4, (2, 1): 4}, (1.75, 1.75))                                   # just inside: shifted
    case({(62, 62): 5, (62, 61): 4, (61, 62): 4}, (62.25, 62.25))
    # ties: the first maximum in row-major order wins
    case({(20, 30): 7, (20, 10): 7, (40, 5): 7}, (10.5, 20.5))
    case({}, (0.5, 0.5))                                                                    # flat map: index 0
    return np.stack([hm for hm, _ in cases])[None], [e for _, e in cases]


def test_decode_matches_hand_worked_peaks_and_face_alignment():
    maps, expected = _peak_maps()
    points, scores = decode_heatmaps(maps)
    np.testing.assert_array_equal(points[0], np.array(expected, np.float32))
    np.testing.assert_array_equal(scores[0], maps[0].reshape(len(expected), -1).max(axis=1))
    fa_points, _, fa_scores = fa_get_preds_fromhm(maps)
    np.testing.assert_array_equal(points, fa_points)
    np.testing.assert_array_equal(scores, fa_scores)
    assert points.dtype == np.float32 and scores.dtype == np.float32


def test_decode_and_transform_back_equal_face_alignment_on_network_heatmaps():
    """On the heatmaps the ORIGINAL network gave (reference vectors) and on noise, with the image transform."""
    (_, (ref,)), (_, (ref2,)) = reference.cases(NAME)
    noise = np.random.default_rng(3).normal(size=(2, 68, 64, 64)).astype(np.float32)
    rounded = np.round(noise * 2) / 2          # many equal neighbours and ties
    for maps in (ref, ref2, noise, rounded):
        points, scores = decode_heatmaps(maps)
        for n in range(len(maps)):
            center, scale = fa_center_scale([131.0, 97.5, 342.25, 330.0], 165)
            fa_points, fa_image, fa_scores = fa_get_preds_fromhm(maps[n:n + 1], center, scale)
            np.testing.assert_array_equal(points[n], fa_points[0])
            np.testing.assert_array_equal(scores[n], fa_scores[0])
            np.testing.assert_array_equal(heatmap_to_image(points[n], center, scale, 64), fa_image[0])
    inner = (points > 0.5) & (points < 63.5)
    assert inner.all(axis=-1).mean() > 0.3     # the shift was exercised on many points


def test_transform_back_hand_computation():
    """x_img = int(x * h / 64 + cx - h / 2), truncated toward zero (negative values too)."""
    center, scale = np.array([200.0, 150.0]), 1.6          # h = 320: 5 image px per heatmap px
    points = np.array([[10.25, 20.75], [0.5, 0.5], [63.5, 40.25]], np.float32)
    got = heatmap_to_image(points, center, scale, 64)
    # 10.25*5 + 200 - 160 = 91.25 -> 91; 20.75*5 + 150 - 160 = 93.75 -> 93; 0.5*5 + 40 = 42.5 -> 42;
    # 0.5*5 - 10 = -7.5 -> -7 (toward zero); 63.5*5 + 40 = 357.5 -> 357; 40.25*5 - 10 = 191.25 -> 191
    np.testing.assert_array_equal(got, [[91, 93], [42, -7], [357, 191]])
    assert got.dtype == np.float32
    # a mathematically whole result (40*5 - 10 = 190) can come out one lower through the pseudo-inverse's
    # rounding, as in face_alignment (manifest notes): ours is the transcription's, whichever it is
    exact = np.array([[63.5, 40.0]], np.float32)
    np.testing.assert_array_equal(heatmap_to_image(exact, center, scale, 64)[0],
                                  fa_transform_np(exact[0], center, scale, 64, True))


# --------------------------------------------------------------------------- crop


def test_centre_scale_and_crop_window_hand_computation():
    box = [100.0, 120.0, 300.0, 340.0]
    center, scale = face_center_scale(box, reference_scale=195)
    # cx = 300 - 200/2 = 200; cy = 340 - 220/2 - 0.12 * 220 = 203.6; scale = (200 + 220) / 195
    np.testing.assert_allclose(center, [200.0, 203.6], rtol=0, atol=1e-12)
    assert scale == pytest.approx(420 / 195, abs=1e-15)
    h = 200 * 420 / 195
    # ul = int(h/256 + c - h/2) toward zero, br = int(c + h/2)
    assert (math.trunc(h / 256 + 200 - h / 2), math.trunc(h / 256 + 203.6 - h / 2)) == (-13, -10)
    assert (math.trunc(200 + h / 2), math.trunc(203.6 + h / 2)) == (415, 418)
    ul, br = crop_window(center, scale, 256)
    assert (ul.tolist(), br.tolist()) == ([-13, -10], [415, 418])


def test_crop_window_equals_face_alignment_torch_transform_on_random_boxes():
    rng = np.random.default_rng(0)
    mismatches = 0
    for _ in range(400):
        x1, y1 = rng.uniform(-50, 600, 2)
        w, h = rng.uniform(20, 400, 2)
        box = [float(np.float32(v)) for v in (x1, y1, x1 + w, y1 + h)]   # detector boxes are float32
        center, scale = fa_center_scale(box, 165)
        ul, br = crop_window(*face_center_scale(box, 165), 256)
        ref_ul = fa_transform([1, 1], center, scale, 256.0, True).tolist()
        ref_br = fa_transform([256.0, 256.0], center, scale, 256.0, True).tolist()
        mismatches += (ul.tolist(), br.tolist()) != (ref_ul, ref_br)
    assert mismatches == 0


@pytest.mark.parametrize("box", [[120.0, 90.0, 260.0, 250.0],     # inside
                                 [-40.0, 30.0, 90.0, 190.0],      # off the left edge
                                 [250.0, -60.0, 330.0, 60.0],     # off the right and top edges
                                 [10.5, 200.25, 170.75, 330.5]])  # off the bottom, fractional
def test_crop_equals_face_alignment_crop(box):
    image = np.random.default_rng(1).integers(0, 256, (300, 320, 3), dtype=np.uint8)
    center, scale = face_center_scale(box, 195)
    np.testing.assert_array_equal(crop_face(image, center, scale), fa_crop(image, *fa_center_scale(box, 195)))


# --------------------------------------------------------------------------- 68 -> 5, flip


def test_landmarks_68_to_5_hand_computation():
    points = np.stack([np.arange(68), 2 * np.arange(68) + 1], axis=-1).astype(np.float32)
    # eyes: mean of 36..41 = 38.5, of 42..47 = 44.5 (y = 2x + 1); nose tip 30; mouth corners 48, 54
    expected = np.array([[38.5, 78.0], [44.5, 90.0], [30, 61], [48, 97], [54, 109]], np.float32)
    np.testing.assert_array_equal(landmarks_68_to_5(points), expected)
    batch = landmarks_68_to_5(np.stack([points, points + 10]))
    np.testing.assert_array_equal(batch, np.stack([expected, expected + 10]))
    assert batch.dtype == np.float32
    with pytest.raises(ValueError, match="68 x 2"):
        landmarks_68_to_5(points[:5])


def test_flip_pairs_and_flip_are_face_alignment_s():
    notes = reference.manifest(NAME)["notes"]
    pairs = json.loads(re.search(r"pairs = (\[[0-9, ]+\])", notes).group(1))
    assert list(FLIP_PAIRS) == pairs
    maps = np.random.default_rng(2).normal(size=(1, 68, 64, 64)).astype(np.float32)
    flipped = flip_heatmaps(maps)
    np.testing.assert_array_equal(flipped[0, 0, 5, 0], maps[0, 16, 5, 63])    # jaw end <-> jaw end, mirrored
    np.testing.assert_array_equal(flipped[0, 36], maps[0, 45][:, ::-1])       # outer eye corners swap
    np.testing.assert_array_equal(flipped[0, 30], maps[0, 30][:, ::-1])       # nose tip stays
    np.testing.assert_array_equal(flip_heatmaps(flipped), maps)               # an involution


def test_budgets_are_judged_on_the_decoded_points():
    """``landmark_nme``: mean decoded-point distance over the heatmap width, worked out by hand."""
    from ffkit.validation.parity import judge

    reference_maps = np.zeros((2, 68, 64, 64), np.float32)
    reference_maps[:, :, 10, 20] = 1.0                       # every point at (20.5, 10.5)
    candidate = reference_maps.copy()
    candidate[0, 5, 10, 20], candidate[0, 5, 13, 24] = 0.0, 1.0      # one point to (24.5, 13.5): 5 px away
    candidate[1, 7, 10, 21] = 0.5                                    # another shifted by 0.25 px (right larger)
    checks = judge(get_recipe(NAME), "fp16", [{"heatmaps": candidate}], [{"heatmaps": reference_maps}])
    (check,) = checks
    nme = (5.0 + 0.25) / 64 / (2 * 68)
    assert check.figures["landmark_nme"] == pytest.approx(nme, rel=1e-12)
    assert check.figures["landmark_worst"] == pytest.approx(5 / 64, rel=1e-12)
    assert check.figures["landmark_moved"] == pytest.approx(1 / 136, rel=1e-12)
    assert check.criterion.startswith("landmark_nme <= 0.002") and check.value == check.figures["landmark_nme"]
    assert check.passed == (nme <= 0.002)
    assert "landmark_nme" not in judge(get_recipe(NAME), "fp32", [{"heatmaps": candidate}],
                                       [{"heatmaps": reference_maps}])[0].figures


# --------------------------------------------------------------------------- Landmarker end to end


def _red_pool_model() -> onnx.ModelProto:
    """``heatmaps[n, k] = avgpool4x4(input[n, 0])`` for all 68 k: the R channel (the input is RGB), pooled."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 256, 256])
    y = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", 68, 64, 64])
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("s", [0]), ("e", [1]), ("a", [1]), ("reps", [1, 68, 1, 1]))]
    nodes = [helper.make_node("Slice", ["input", "s", "e", "a"], ["red"]),
             helper.make_node("AveragePool", ["red"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
             helper.make_node("Tile", ["pooled", "reps"], ["heatmaps"])]
    return helper.make_model(helper.make_graph(nodes, "red_pool", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_landmarker_uniform_face_gives_the_hand_computed_corner_point():
    """A uniform crop ties every heatmap cell: index 0 wins, point (0.5, 0.5), score R/255."""
    image = np.zeros((400, 400, 3), np.uint8)
    image[...] = (50, 60, 200)                       # BGR: R = 200
    box = [150.0, 140.0, 250.0, 260.0]
    points, scores = Landmarker(create_session(_red_pool_model())).landmarks(image, np.array([box]))
    h = 200 * (100 + 120) / 165
    cx, cy = 200.0, 260 - 60 - 0.12 * 120
    expected = (math.trunc(0.5 * h / 64 + cx - h / 2), math.trunc(0.5 * h / 64 + cy - h / 2))
    assert expected == (68, 54)
    assert points.shape == (1, 68, 2) and scores.shape == (1, 68) and points.dtype == np.float32
    np.testing.assert_array_equal(points[0], np.tile(np.array(expected, np.float32), (68, 1)))
    np.testing.assert_allclose(scores, 200 / 255, rtol=1e-6)


def test_landmarker_finds_a_red_spot_within_one_heatmap_cell_and_flip_adds():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 20, (360, 420, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:360, 0:420]
    spot = 230 * np.exp(-((xx - 183.0) ** 2 + (yy - 211.0) ** 2) / (2 * 6.0 ** 2))
    image[..., 2] = np.clip(image[..., 2] + spot, 0, 255).astype(np.uint8)       # R: the spot at (183, 211)
    decoy = 250 * np.exp(-((xx - 240.0) ** 2 + (yy - 150.0) ** 2) / (2 * 6.0 ** 2))
    image[..., 0] = np.clip(image[..., 0] + decoy, 0, 255).astype(np.uint8)      # B: a brighter decoy
    boxes = np.array([[120.0, 110.0, 280.0, 300.0, 0.99], [150.0, 170.0, 230.0, 260.0, 0.9]])
    session = create_session(_red_pool_model())
    points, scores = Landmarker(session).landmarks(image, boxes)
    for k, box in enumerate(boxes):
        cell = 200 * ((box[2] - box[0]) + (box[3] - box[1])) / 165 / 64          # image px per heatmap px
        err = np.linalg.norm(points[k] - [183.0, 211.0], axis=-1)
        assert err.max() <= cell, (k, points[k, 0], cell)
    flipped_points, flipped_scores = Landmarker(session, flip=True).landmarks(image, boxes)
    # the model is mirror-symmetric, so the mirrored run adds the same maps: same points, twice the scores
    np.testing.assert_array_equal(flipped_points, points)
    np.testing.assert_allclose(flipped_scores, 2 * scores, rtol=1e-6)
    empty = Landmarker(session).landmarks(image, np.zeros((0, 4)))
    assert empty[0].shape == (0, 68, 2) and empty[1].shape == (0, 68)


# --------------------------------------------------------------------------- checkpoint layouts


@functools.lru_cache(maxsize=1)
def _expected_state() -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in reference.seed0_fill(NAME).items()}


def _assert_is_seed0_fill(state: dict[str, torch.Tensor]) -> None:
    expected = _expected_state()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key


def test_2017_layout_wrapper_prefix_and_no_batch_counters(tmp_path):
    """``{'state_dict': {'module.' + key: tensor}}`` without BatchNorm ``num_batches_tracked`` loads strictly."""
    recipe = get_recipe(NAME)
    sd = {f"module.{k}": v for k, v in _expected_state().items() if not k.endswith("num_batches_tracked")}
    counters = [k for k, _, _ in reference.manifest(NAME)["state_dict"] if k.endswith(".num_batches_tracked")]
    assert len(sd) == 1129 - len(counters) and len(counters) == 184
    path = tmp_path / "2DFAN-4.pth.tar"
    torch.save({"state_dict": sd}, path)
    model = load_checkpoint(recipe, path)
    _assert_is_seed0_fill(model.state_dict())


class _Small(torch.nn.Module):
    """A small module tree with what FAN holds (ConvBlocks, BatchNorm counters, a Sequential, a
    bias-less conv) plus a non-persistent buffer, for archives made in a second."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.blocks = torch.nn.Sequential(ConvBlock(4, 8), ConvBlock(8, 8))
        self.register_buffer("scratch", torch.arange(3.0), persistent=False)

    def forward(self, x):
        return self.blocks(self.bn(self.conv(x))) + self.scratch.sum()


@pytest.fixture(scope="module")
def small_archives(tmp_path_factory):
    """``torch.jit.trace`` and ``torch.jit.script`` archives of :class:`_Small` (random weights, stats set)."""
    torch.manual_seed(0)
    model = _Small().eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(7)
    root = tmp_path_factory.mktemp("small_ts")
    torch.jit.trace(model, torch.zeros(1, 3, 8, 8), check_trace=False).save(str(root / "traced.zip"))
    torch.jit.script(model).save(str(root / "scripted.zip"))
    return root / "traced.zip", root / "scripted.zip"


def _forbid_torch_loaders(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("the archive was handed to torch's loader")

    monkeypatch.setattr(torch.jit, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


def test_torchscript_reader_equals_torch_s_own_reading(small_archives, monkeypatch):
    """Keys, order, dtypes and values as ``torch.jit.load(path).state_dict()`` gives them, without it."""
    expected = [torch.jit.load(str(path)).state_dict() for path in small_archives]
    _forbid_torch_loaders(monkeypatch)
    for path, want in zip(small_archives, expected):
        got = torchscript_archive.read_state_dict(path, "small")
        assert list(got) == list(want) and len(got) == 1 + 2 + 5 + 24 + 18   # scratch, conv, bn, the blocks
        assert all(got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v)
                   for k, v in want.items())
        assert int(got["bn.num_batches_tracked"]) == 7 and got["bn.num_batches_tracked"].dtype == torch.int64


def _rewrite(src, dst, data_pkl=None, drop: str | None = None):
    """A copy of the archive ``src`` with ``data.pkl`` replaced (bytes, or a function of the old
    bytes) and the records ending in ``drop`` left out."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if drop and info.filename.endswith(drop):
                continue
            data = zin.read(info.filename)
            if info.filename.endswith("/data.pkl") and data_pkl is not None:
                data = data_pkl(data) if callable(data_pkl) else data_pkl
            zout.writestr(info.filename, data)
    return dst


@pytest.mark.slow
def test_torchscript_fan_archive_loads_strictly_whatever_its_class_names(tmp_path, monkeypatch):
    """``torch.jit.trace`` of our FAN with the seed-0 weights, its classes renamed as face_alignment's
    archives name them (``__torch__.face_alignment.models.fan.FAN`` ...): the published keys, strict."""
    model = reference.seed0_model(NAME)
    with torch.no_grad():   # traced at 64 x 64: the same tensors as at 256, in a fraction of the time
        traced = torch.jit.trace(model, torch.zeros(1, 3, 64, 64), check_trace=False)
    traced.save(str(tmp_path / "traced.zip"))
    del traced, model
    ours, theirs = b"__torch__.ffkit.recipes.fan.arch", b"__torch__.face_alignment.models.fan"
    archive = _rewrite(tmp_path / "traced.zip", tmp_path / "2DFAN4-cd938726ad.zip",
                       lambda data: data.replace(ours, theirs))
    with zipfile.ZipFile(archive) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    assert b"__torch__.face_alignment.models.fan\nFAN\n" in pkl and b"ffkit" not in pkl
    _forbid_torch_loaders(monkeypatch)
    _assert_is_seed0_fill(load_checkpoint(get_recipe(NAME), archive).state_dict())


def _hostile_archive(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("archive/version", "3\n")
    return path


def _text(value: str) -> bytes:
    """A pickle BINUNICODE opcode."""
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def test_hostile_torchscript_archive_is_refused_unrun(tmp_path):
    markers = [tmp_path / "pwned0", tmp_path / "pwned1"]
    recipe = get_recipe(NAME)
    # data.pkl = os.system("touch pwned0")
    top = b"cos\nsystem\n(S'touch " + str(markers[0]).encode() + b"'\ntR."
    # data.pkl = a FAN module whose attribute conv1 is eval("...touch pwned1...")
    nested = (b"\x80\x02c__torch__.face_alignment.models.fan\nFAN\n)\x81}" + _text("conv1") + b"cbuiltins\neval\n"
              + _text(f"__import__('pathlib').Path({str(markers[1])!r}).touch()") + b"\x85Rsb.")
    for i, (payload, refused) in enumerate(((top, "os.system"), (nested, "builtins.eval"))):
        path = _hostile_archive(tmp_path / f"hostile{i}.zip", payload)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(recipe, path)
        message = str(err.value)
        assert refused in message and str(path) in message and "nothing from the file was run" in message
        assert "\n" not in message
    assert not any(m.exists() for m in markers)


def test_broken_torchscript_archives_are_one_line_errors(small_archives, tmp_path):
    recipe = get_recipe(NAME)
    traced = small_archives[0]
    missing = _rewrite(traced, tmp_path / "missing.zip", drop="/data/7")
    with pytest.raises(CheckpointError, match="TorchScript archive ffkit cannot read"):
        read_state_dict(missing, recipe)
    with zipfile.ZipFile(traced) as z:
        record = next(n for n in z.namelist() if n.endswith("/data/3"))
        padded = z.read(record) + b"\0\0\0\0"
    resized = _rewrite(traced, tmp_path / "resized.zip", drop="/data/3")
    with zipfile.ZipFile(resized, "a") as z:
        z.writestr(record, padded)
    with pytest.raises(CheckpointError, match=r"data/3 holds \d+ bytes, its tensor needs \d+"):
        read_state_dict(resized, recipe)
    not_module = _rewrite(traced, tmp_path / "list.zip", pickle.dumps([1, 2], protocol=2))
    with pytest.raises(CheckpointError, match="holds a list, not a fan_2dfan4 module"):
        read_state_dict(not_module, recipe)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(traced.read_bytes()[:traced.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(recipe, truncated)
    assert str(truncated) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not a fan_2dfan4 checkpoint: .* missing keys"):   # strict keys
        load_checkpoint(recipe, traced)


def test_declaration_matches_manifest_and_reads_torchscript():
    recipe, m = get_recipe(NAME), reference.manifest(NAME)
    assert recipe.role == "landmarker" and recipe.num_params == m["num_params"] and recipe.torchscript_archives
    assert [list(i["shape"]) for i in m["inputs"]] == [list(t.shape) for t in recipe.inputs]
    assert [list(o["shape"]) for o in m["outputs"]] == [list(t.shape) for t in recipe.outputs]
    pixel = np.full((1, 1, 3), (10, 20, 255), np.uint8)           # BGR -> RGB / 255
    np.testing.assert_allclose(recipe.pixels.to_tensor(pixel).ravel(), [1.0, 20 / 255, 10 / 255], rtol=1e-7)
