"""Face-only restore: with a face parser, GFPGAN's crop is pasted as facexlib's
``paste_faces_to_input_image(use_parse=True)`` pastes it, so hair and background keep the frame.

The reference below is facexlib's code path written out on the whole frame (numpy + OpenCV);
the label map is hand-made: a face ellipse (skin), hair above it, background elsewhere.
"""

from __future__ import annotations

import cv2
import numpy as np

from ffkit.runtime.enhancer import PARSE_KEEP, parsed_face_mask, paste_parsed, paste_restored


def facexlib_parse_paste(frame, face, matrix, labels):
    """facexlib, use_parse=True, upscale_factor=1, written out on the whole frame."""
    h, w = frame.shape[:2]
    inverse_affine = cv2.invertAffineTransform(matrix)
    inv_restored = cv2.warpAffine(face, inverse_affine, (w, h))
    colormap = [0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0]
    mask = np.zeros(labels.shape)
    for idx, color in enumerate(colormap):
        mask[labels == idx] = color
    mask = cv2.GaussianBlur(mask, (101, 101), 11)
    mask = cv2.GaussianBlur(mask, (101, 101), 11)
    thres = 10
    mask[:thres, :] = 0
    mask[-thres:, :] = 0
    mask[:, :thres] = 0
    mask[:, -thres:] = 0
    mask = mask / 255.
    mask = cv2.resize(mask, face.shape[:2])
    mask = cv2.warpAffine(mask, inverse_affine, (w, h), flags=3)
    inv_soft_mask = mask[:, :, None]
    out = inv_soft_mask * inv_restored + (1 - inv_soft_mask) * frame
    return out.astype(np.uint8)


def scene():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (700, 800, 3), dtype=np.uint8)
    face = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    labels = np.zeros((512, 512), np.uint8)
    yy, xx = np.mgrid[:512, :512]
    labels[((yy - 300) / 150) ** 2 + ((xx - 256) / 120) ** 2 <= 1] = 1     # skin
    labels[(yy < 150) & (np.abs(xx - 256) < 200)] = 17                       # hair
    labels[(yy > 440) & (np.abs(xx - 256) < 90)] = 14                        # neck
    angle, scale = np.deg2rad(8.0), 0.9
    matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle), -60.0],
                       [scale * np.sin(angle), scale * np.cos(angle), -40.0]])
    return frame, face, matrix, labels


def test_parsed_paste_equals_facexlib_and_keeps_hair_and_background():
    frame, face, matrix, labels = scene()
    ours = frame.copy()
    region = paste_parsed(frame, face, matrix, parsed_face_mask(labels), out=ours)
    expected = facexlib_parse_paste(frame, face, matrix, labels)
    diff = np.abs(ours.astype(int) - expected.astype(int))
    # OpenCV rounds the warp of the shifted crop box a little differently from the whole frame
    # (fixed-point sub-pixel steps) and the blend is float32, not float64: a few levels, rarely
    print(f"max diff {diff.max()}, share of values differing {(diff > 0).mean():.2e}")
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # the user-visible claim, as numbers: where the blurred face mask is 0, nothing changed
    soft = cv2.warpAffine(cv2.resize(parsed_face_mask(labels), (512, 512)), cv2.invertAffineTransform(matrix),
                          (frame.shape[1], frame.shape[0]), flags=3)
    untouched = soft == 0
    assert np.array_equal(ours[untouched], frame[untouched])
    # the whole-crop paste (no parser) changes the hair too; the parsed one does not
    hair = cv2.warpAffine((labels == 17).astype(np.uint8), cv2.invertAffineTransform(matrix),
                          (frame.shape[1], frame.shape[0]), flags=cv2.INTER_NEAREST).astype(bool)
    hair &= soft == 0
    whole = frame.copy()
    paste_restored(frame, face, matrix, out=whole)
    assert hair.sum() > 5000
    assert np.array_equal(ours[hair], frame[hair]) and np.any(whole[hair] != frame[hair])
    changed = np.any(ours != frame, axis=2)
    x0, y0, x1, y1 = region
    assert not changed[:y0].any() and not changed[y1:].any() and not changed[:, :x0].any() and not changed[:, x1:].any()
    print(f"changed pixels: parsed {changed.sum()}, whole crop {np.any(whole != frame, axis=2).sum()}")


def test_parse_keep_is_facexlibs_colormap():
    colormap = [0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0]
    assert PARSE_KEEP == tuple(i for i, c in enumerate(colormap) if c)
