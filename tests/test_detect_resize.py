"""Detector resize: network-input coordinates map back to the frame half-pixel-exactly.

OpenCV's ``resize`` puts pixel centres at half integers: input pixel ``u`` samples frame
coordinate ``(u + 0.5) * W / w_in - 0.5``. Dividing by the scale (Pytorch_Retinaface's
``u / s``) is off by ``(W / w_in - 1) / 2`` px: 2.5 px at 4K -> 640, 1 px at 1080p -> 640.
Every expected value here is computed by hand or measured on a cv2-resized image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ffkit.runtime import retinaface_decode as rd
from ffkit.runtime.detector import resize_for_detection


def test_4k_to_640_input_size_and_known_points():
    frame = np.zeros((2160, 3840, 3), np.uint8)
    net_in, scale = resize_for_detection(frame, 640)
    assert net_in.shape == (360, 640, 3) and scale == pytest.approx(1 / 6)
    # by hand, ratio 3840 / 640 = 2160 / 360 = 6: x = (u + 0.5) * 6 - 0.5 = 6u + 2.5
    pts = np.array([[0.0, 0.0, 100.0, 50.0, 639.5, 359.5, -0.5, -0.5]])
    got = rd.input_to_frame(pts, (360, 640), (2160, 3840))
    np.testing.assert_allclose(got, [[2.5, 2.5, 602.5, 302.5, 3839.5, 2159.5, -0.5, -0.5]], atol=1e-4)


def test_1080p_ratio_is_per_axis_from_integer_sizes():
    # 1366 x 768 -> 640 x 360 (cv2's rounding of 768 * 640 / 1366 = 359.8): ratios differ per axis
    net_in, _ = resize_for_detection(np.zeros((768, 1366, 3), np.uint8), 640)
    assert net_in.shape == (360, 640, 3)
    got = rd.input_to_frame(np.array([10.0, 10.0]), (360, 640), (768, 1366))
    np.testing.assert_allclose(got, [10.5 * 1366 / 640 - 0.5, 10.5 * 768 / 360 - 0.5], atol=1e-4)
    # 1920 x 1080 -> 640 x 360, ratio 3: the old u / s is 1 px off
    got = rd.input_to_frame(np.array([200.0, 100.0]), (360, 640), (1080, 1920))
    np.testing.assert_allclose(got, [600.0 + 1.0, 300.0 + 1.0], atol=1e-4)


@pytest.mark.parametrize("frame_hw, old_bias", [((2160, 3840), 2.5), ((1080, 1920), 1.0)])
def test_bright_spot_found_where_mapped(frame_hw, old_bias):
    """A Gaussian spot centred at a known sub-pixel frame point, resized by the detector's own
    resize; its intensity centroid in the network input maps back onto the known point."""
    h, w = frame_hw
    x0, y0 = 1234.3, 777.6
    yy, xx = np.mgrid[0:h, 0:w]
    spot = np.rint(250 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 14.0 ** 2))).astype(np.uint8)
    frame = np.repeat(spot[:, :, None], 3, axis=2)
    net_in, scale = resize_for_detection(frame, 640)
    r = net_in[:, :, 0].astype(np.float64)
    vv, uu = np.mgrid[0:r.shape[0], 0:r.shape[1]]
    u, v = (r * uu).sum() / r.sum(), (r * vv).sum() / r.sum()
    mapped = rd.input_to_frame(np.array([u, v]), r.shape, (h, w))
    assert math.hypot(mapped[0] - x0, mapped[1] - y0) < 0.1
    # the scale-division mapping misses by the stated bias on both axes
    np.testing.assert_allclose(np.array([u, v]) / scale - [x0, y0], [-old_bias, -old_bias], atol=0.1)


def test_detect_faces_maps_boxes_and_landmarks_to_the_frame():
    """One anchor with zero deltas: its input-pixel box and landmarks, mapped by hand."""
    h_in, w_in = 360, 640
    priors = rd.prior_boxes(h_in, w_in)
    a = priors.shape[0]
    loc, landms = np.zeros((a, 4), np.float32), np.zeros((a, 10), np.float32)
    conf = np.tile(np.array([1.0, 0.0], np.float32), (a, 1))
    conf[0] = [0.1, 0.9]    # level 0, row 0, column 0, min size 16: centre (4, 4) -> [-4, -4, 12, 12]
    det = rd.detect_faces(loc, conf, landms, h_in, w_in, frame_size=(2160, 3840))
    assert len(det) == 1
    np.testing.assert_allclose(det.boxes[0], [-4 * 6 + 2.5, -4 * 6 + 2.5, 12 * 6 + 2.5, 12 * 6 + 2.5], atol=1e-4)
    np.testing.assert_allclose(det.landmarks[0], np.full((5, 2), 4 * 6 + 2.5), atol=1e-4)
    with pytest.raises(ValueError):
        rd.detect_faces(loc, conf, landms, h_in, w_in, resize=0.5, frame_size=(720, 1280))


def test_no_resize_is_untouched():
    frame = np.zeros((480, 640, 3), np.uint8)
    net_in, scale = resize_for_detection(frame, 640)
    assert net_in is frame and scale == 1.0
    ref = cv2.resize(np.zeros((2160, 3840, 3), np.uint8), None, fx=1 / 6, fy=1 / 6)
    assert ref.shape == resize_for_detection(np.zeros((2160, 3840, 3), np.uint8), 640)[0].shape
