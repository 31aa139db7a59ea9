"""GFPGAN paste-back: facexlib's ``paste_faces_to_input_image`` without a parsing model.

The enhance step may change only pixels inside the warped 512 crop; the footprint, the
landmark box and the reference paste are computed here from the similarity the test builds
(not from ffkit's alignment), and facexlib's whole-frame code is transcribed as the reference.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from ffkit.recipes import get_recipe
from ffkit.runtime.enhancer import Enhancer, paste_restored
from ffkit.runtime.templates import FFHQ_512_TEMPLATE

#: Upright, the FFHQ 512 crop spans 4.07 (x) and 4.66 (y, above the eyes) half-extents of its
#: 5-landmark box from that box's centre: (256 / 62.96, 305.68 / 65.60). Rotated 12 degrees, 4.13 / 4.45.
GROWTH = 4.8


class InvertingGfpgan:
    """Stands in for a GFPGAN session: returns ``-x`` (the crop's colour negative)."""

    def get_inputs(self):
        return [SimpleNamespace(name="input", type="tensor(float)")]

    def get_outputs(self):
        return [SimpleNamespace(name="output")]

    def run(self, names, feeds):
        return [-feeds["input"]]


def similarity(angle_deg: float, side: float, centre) -> np.ndarray:
    """Frame -> crop matrix putting a ``side``-pixel frame square centred at ``centre`` onto 512."""
    s, a = 512.0 / side, math.radians(angle_deg)
    rot = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.hstack([rot, (np.array([256.0, 256.0]) - rot @ np.asarray(centre, float))[:, None]])


def landmarks_for(m: np.ndarray) -> np.ndarray:
    a, t = m[:, :2], m[:, 2]
    return (FFHQ_512_TEMPLATE - t) @ np.linalg.inv(a).T


def crop_coords(m: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return m[0, 0] * xx + m[0, 1] * yy + m[0, 2], m[1, 0] * xx + m[1, 1] * yy + m[1, 2]


def facexlib_paste(frame: np.ndarray, face: np.ndarray, m: np.ndarray) -> np.ndarray:
    """facexlib FaceRestoreHelper.paste_faces_to_input_image, use_parse=False, upscale 1 (whole frame)."""
    h, w = frame.shape[:2]
    inverse_affine = cv2.invertAffineTransform(m)
    inv_restored = cv2.warpAffine(face, inverse_affine, (w, h))
    mask = np.ones((512, 512), dtype=np.float32)
    inv_mask = cv2.warpAffine(mask, inverse_affine, (w, h))
    inv_mask_erosion = cv2.erode(inv_mask, np.ones((2, 2), np.uint8))
    pasted_face = inv_mask_erosion[:, :, None] * inv_restored
    total_face_area = np.sum(inv_mask_erosion)
    w_edge = int(total_face_area ** 0.5) // 20
    erosion_radius = w_edge * 2
    inv_mask_center = cv2.erode(inv_mask_erosion, np.ones((erosion_radius, erosion_radius), np.uint8))
    blur_size = w_edge * 2
    inv_soft_mask = cv2.GaussianBlur(inv_mask_center, (blur_size + 1, blur_size + 1), 0)[:, :, None]
    return (inv_soft_mask * pasted_face + (1 - inv_soft_mask) * frame).astype(np.uint8), inv_mask_erosion


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)


@pytest.mark.parametrize("angle", [0.0, 12.0])
def test_enhance_changes_only_the_warped_face_crop(frame, angle):
    m = similarity(angle, 300.0, (640.0, 380.0))
    lm = landmarks_for(m)
    enhancer = Enhancer(InvertingGfpgan(), get_recipe("gfpgan_v1.4"))
    out = frame.copy()
    region = enhancer.enhance_into(out, lm, 1.0)
    changed = (out != frame).any(axis=2)

    cx, cy = crop_coords(m, frame.shape)
    eps = 0.05   # crop pixels: the LMedS fit of ffkit's alignment is within 3e-4 of m
    footprint = (cx > -1 - eps) & (cx < 512 + eps) & (cy > -1 - eps) & (cy < 512 + eps)
    assert int((changed & ~footprint).sum()) == 0
    assert changed.sum() > 0.95 * footprint.sum()          # the negative changes nearly all of it

    ys, xs = np.nonzero(changed)
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    assert np.abs(xs - centre[0]).max() <= GROWTH * half[0]
    assert np.abs(ys - centre[1]).max() <= GROWTH * half[1]
    x0, y0, x1, y1 = region
    assert (xs.min(), ys.min()) >= (x0, y0) and (xs.max(), ys.max()) < (x1, y1)


def test_paste_matches_facexlib_whole_frame(frame):
    m = similarity(7.0, 260.0, (500.0, 300.0))
    face = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    ref, mask = facexlib_paste(frame, face, m)
    got = frame.copy()
    paste_restored(frame, face, m, out=got)
    # the one deviation: where facexlib's eroded mask is 0 its soft mask still reaches 1 px,
    # blending the frame toward black; ffkit leaves those pixels as they are
    band = (mask <= 0) & (ref != frame).any(axis=2)
    np.testing.assert_array_equal(got[band], frame[band])
    assert band.sum() < 2 * 260 * 1.2                       # one pixel along two sides, at most
    diff = np.abs(got.astype(int) - ref.astype(int))[~band]
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3     # OpenCV's rounding of the shifted warp


def test_blend_scales_the_soft_mask(frame):
    m = similarity(0.0, 240.0, (700.0, 400.0))
    face = np.full((512, 512, 3), 255, np.uint8)
    full, half = frame.copy(), frame.copy()
    paste_restored(frame, face, m, out=full)
    paste_restored(frame, face, m, blend=0.5, out=half)
    # at the crop centre soft = 1: 0.5 * 255 + 0.5 * frame, truncated
    y, x = 400, 700
    np.testing.assert_array_equal(full[y, x], [255, 255, 255])
    np.testing.assert_array_equal(half[y, x], np.floor(0.5 * 255.0 + 0.5 * frame[y, x].astype(np.float32)))
    assert paste_restored(frame, face, m, blend=0.0, out=frame.copy()) is None
