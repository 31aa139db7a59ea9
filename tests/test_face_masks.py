"""Crop-space blend masks: regions of a hand-made label map, the feathering and the box against
formulas written out here, the min-combination, and the user's region names."""

from __future__ import annotations

import re

import numpy as np
import pytest
import reference

from ffkit.recipes.errors import FfkitError
from ffkit.runtime import geometry
from ffkit.runtime.face_masks import (
    CLASS_NAMES,
    DEFAULT_REGIONS,
    REGIONS,
    MaskError,
    box_mask,
    combine_masks,
    crop_region_mask,
    feather_mask,
    region_mask,
    region_names,
)


def test_class_names_are_the_manifests():
    """The manifest's notes list the classes as ``0 background, 1 skin, ...`` (CelebAMask-HQ order)."""
    notes = reference.manifest("bisenet_faceparsing")["notes"]
    listed = re.search(r"Classes \([^)]*\): (.*?)\. ", notes).group(1)
    assert [f"{i} {n}" for i, n in enumerate(CLASS_NAMES)] == listed.split(", ")


def test_default_regions_are_facefusions():
    """facefusion.choices.face_mask_region_set, every region on by default."""
    assert {n: REGIONS[n] for n in DEFAULT_REGIONS} == {
        "skin": 1, "left-eyebrow": 2, "right-eyebrow": 3, "left-eye": 4, "right-eye": 5, "glasses": 6,
        "nose": 10, "mouth": 11, "upper-lip": 12, "lower-lip": 13}
    assert sorted(REGIONS.values()) == list(range(1, 19))


LABELS = np.array([[0, 0, 17, 17, 17, 0],
                   [0, 1, 2, 3, 1, 7],
                   [9, 4, 6, 6, 5, 8],
                   [0, 1, 10, 10, 1, 0],
                   [14, 1, 12, 12, 1, 14],
                   [14, 11, 13, 13, 18, 16]], np.uint8)


def test_region_mask_of_a_hand_made_label_map():
    face = np.array([[0, 0, 0, 0, 0, 0],
                     [0, 1, 1, 1, 1, 0],
                     [0, 1, 1, 1, 1, 0],
                     [0, 1, 1, 1, 1, 0],
                     [0, 1, 1, 1, 1, 0],
                     [0, 1, 1, 1, 0, 0]], np.float32)
    got = region_mask(LABELS)
    assert got.dtype == np.float32 and got.shape == LABELS.shape
    np.testing.assert_array_equal(got, face)
    hair_neck = np.zeros((6, 6), np.float32)
    hair_neck[0, 2:5] = 1
    hair_neck[4:, 0] = hair_neck[4, 5] = 1
    np.testing.assert_array_equal(region_mask(LABELS, "hair, neck"), hair_neck)
    np.testing.assert_array_equal(region_mask(LABELS.astype(np.int64), ["left-eye", "glasses"]),
                                  np.isin(np.arange(36).reshape(6, 6), [13, 14, 15]).astype(np.float32))


def test_unknown_region_is_one_line_listing_the_valid_names():
    with pytest.raises(MaskError) as err:
        region_mask(LABELS, "skin,left-eyebrows")
    text = str(err.value)
    assert isinstance(err.value, FfkitError) and "\n" not in text
    assert "'left-eyebrows'" in text and all(name in text for name in REGIONS)
    with pytest.raises(MaskError):
        region_names("")
    assert region_names(" Nose,nose ,mouth") == ("nose", "mouth")


def test_combine_masks_is_the_elementwise_minimum():
    a = np.array([[0.0, 0.5, 1.0], [0.25, 1.0, 0.75]], np.float32)
    b = np.array([[1.0, 0.25, 1.0], [0.5, 0.0, 0.75]], np.float32)
    c = np.array([[1.0, 1.0, 0.5], [1.0, 1.0, 1.5]], np.float32)
    np.testing.assert_array_equal(combine_masks(a, b, c), [[0.0, 0.25, 0.5], [0.25, 0.0, 0.75]])
    np.testing.assert_array_equal(combine_masks(c), [[1.0, 1.0, 0.5], [1.0, 1.0, 1.0]])   # clipped to [0, 1]
    with pytest.raises(ValueError):
        combine_masks(a, np.ones((3, 2), np.float32))


def _blur(m: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """Separable Gaussian ``exp(-d^2 / (2 sigma^2))`` over ``-radius..radius``, normalised, border
    reflected without repeating the edge pixel (OpenCV's BORDER_REFLECT_101 = numpy 'reflect')."""
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-d * d / (2 * sigma * sigma))
    g /= g.sum()
    p = np.pad(m.astype(np.float64), radius, mode="reflect")
    rows = np.stack([np.convolve(r, g, mode="valid") for r in p])
    return np.stack([np.convolve(col, g, mode="valid") for col in rows.T]).T


def test_feathering_follows_facefusions_formula():
    """(clip(blur_5(m), 0.5, 1) - 0.5) * 2, OpenCV's kernel for sigma 5 being 41 taps (radius 20)."""
    m = np.zeros((30, 70), np.float32)
    m[:, :35] = 1
    m[10:20, 50:60] = 1
    expected = (np.clip(_blur(m, 5.0, 20), 0.5, 1.0) - 0.5) * 2
    got = feather_mask(m)
    assert got.dtype == np.float32 and got.shape == m.shape
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert got[0, 0] == 1.0 and got[15, 34] < 0.1 and got[15, 55] < 0.4   # the edge moves inward
    np.testing.assert_array_equal(feather_mask(np.ones((16, 24)), size=(48, 32)), np.ones((32, 48)))
    # resized first: a 2x bilinear upscale of the half-plane, then the same formula at the new size
    half = crop_region_mask(np.where(np.arange(20) < 10, 1, 0)[None].repeat(8, 0), "skin", size=(40, 16))
    up = np.clip((np.arange(40) + 0.5) / 2 - 0.5, 0, 19)                 # source x of each output column
    row = np.interp(up, np.arange(20), (np.arange(20) < 10).astype(float))
    np.testing.assert_allclose(half, (np.clip(_blur(np.tile(row, (16, 1)), 5.0, 20), 0.5, 1) - 0.5) * 2, atol=2e-6)


def _paste_feather(w: int, h: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """insightface's paste mask written out for a hard box ``(y0, y1, x0, x1)`` of a ``w x h`` crop:
    extents ``s = int(sqrt((y1-1-y0) (x1-1-x0)))``; erode ``k = max(s // 10, 10)`` (a ``k x k`` box
    anchored at ``k // 2``: offsets ``-k//2 .. k-1-k//2``), blur radius ``r = max(s // 20, 5)`` with
    OpenCV's sigma for ``2r+1`` taps, ``0.3 (r - 1) + 0.8``; outside the crop is 0."""
    y0, y1, x0, x1 = box
    s = int(np.sqrt((y1 - 1 - y0) * (x1 - 1 - x0)))
    k, r = max(s // 10, 10), max(s // 20, 5)
    pad = 2 * (k + r)
    m = np.zeros((h + 2 * pad, w + 2 * pad))
    m[pad + y0 + k // 2:pad + y1 - (k - 1 - k // 2), pad + x0 + k // 2:pad + x1 - (k - 1 - k // 2)] = 1
    return _blur(m, 0.3 * (r - 1) + 0.8, r)[pad:pad + h, pad:pad + w]


def test_box_mask_is_the_paste_feather_written_out():
    np.testing.assert_allclose(box_mask(128), _paste_feather(128, 128, (0, 128, 0, 128)), atol=1e-5)
    # padding (top, right, bottom, left) in percent: int(160 * 10 / 100) = 16 rows off the top, ...
    got = box_mask((120, 160), padding=(10, 5, 25, 0))
    assert got.shape == (160, 120)
    np.testing.assert_allclose(got, _paste_feather(120, 160, (16, 160 - 40, 0, 120 - 6)), atol=1e-5)
    # blur 0: the eroded box itself; s = int(sqrt(99 * 99)) = 99 -> k = 10 (offsets -5..4)
    hard = np.zeros((100, 100), np.float32)
    hard[5:96, 5:96] = 1
    np.testing.assert_array_equal(box_mask(100, blur=0), hard)
    with pytest.raises(MaskError):
        box_mask(64, padding=(0, 0, 120, 0))


def test_box_mask_equals_the_mask_paste_back_applies_at_scale_one():
    """A white 128 crop pasted onto black with a pure translation: the frame shows the mask x 255."""
    frame = np.zeros((220, 240, 3), np.uint8)
    white = np.full((128, 128, 3), 255, np.uint8)
    m = np.array([[1.0, 0.0, -50.0], [0.0, 1.0, -40.0]])    # frame -> crop: the crop sits at x 50, y 40
    pasted = geometry.paste_back(frame, white, m, round_output=True)[..., 0].astype(np.int32)
    expected = np.rint(box_mask(128).astype(np.float64) * 255).astype(np.int32)
    assert np.abs(pasted[40:168, 50:178] - expected).max() <= 1
    assert pasted[40:168, 50:178].max() == 255 and pasted[40:168, 50:178].min() == 0
