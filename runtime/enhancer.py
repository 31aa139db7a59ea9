"""Face restoration with a GFPGAN artifact (facexlib ``FaceRestoreHelper`` alignment and paste).

The restored 512 crop goes back as facexlib's ``paste_faces_to_input_image`` pastes it
(``upscale_factor=1``): without a parsing model, feathered by the face area
(:func:`paste_restored`); with one (GFPGANer's ``use_parse=True``), inside the parser's face
classes, blurred as facexlib blurs them (:func:`parsed_face_mask`, :func:`paste_parsed`), so
hair, ears, neck and background keep the frame's pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import onnxruntime as ort

from ffkit.recipes.spec import Recipe

from .geometry import paste_region, warp_face
from .sessions import run_session
from .templates import GFPGAN_BORDER_VALUE, gfpgan_norm_matrix

__all__ = ["Enhancer", "paste_restored", "parsed_face_mask", "paste_parsed", "PARSE_KEEP"]

Region = tuple[int, int, int, int]

#: facexlib ``MASK_COLORMAP``: the parser classes a restored face is pasted over (255 there):
#: skin, brows, eyes, glasses, ears, earring, nose, mouth, lips and necklace; background, neck,
#: cloth, hair and hat (0) keep the frame.
PARSE_KEEP = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15)
#: facexlib zeroes this many pixels along each border of the blurred mask ("the black borders").
PARSE_BORDER = 10


def parsed_face_mask(labels: np.ndarray) -> np.ndarray:
    """facexlib's paste mask from a ``S x S`` label map of the restored face (classes 0..18):
    255 on :data:`PARSE_KEEP`, Gaussian-blurred twice (101 x 101, sigma 11), a 10-pixel border
    zeroed, divided by 255. ``S x S`` float64 in [0, 1]."""
    mask = np.where(np.isin(labels, PARSE_KEEP), 255.0, 0.0)
    mask = cv2.GaussianBlur(mask, (101, 101), 11)
    mask = cv2.GaussianBlur(mask, (101, 101), 11)
    t = PARSE_BORDER
    mask[:t, :] = 0
    mask[-t:, :] = 0
    mask[:, :t] = 0
    mask[:, -t:] = 0
    return mask / 255.0


def paste_parsed(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray, mask: np.ndarray, *,
                 blend: float = 1.0, out: np.ndarray | None = None) -> Region | None:
    """Paste a restored crop as facexlib does with a parsing model: ``soft = warpAffine(mask,
    inv, flags=3)`` (``mask`` from :func:`parsed_face_mask`, resized to the crop), ``out = soft *
    warpAffine(face, inv) + (1 - soft) * frame`` truncated to uint8; ``blend`` scales ``soft``.
    Work is confined to the warped crop's box; pixels where ``soft`` is 0 stay bit-identical.

    Args:
        frame: ``H x W x 3`` uint8 BGR. face: ``S x S x 3`` uint8 BGR restored crop.
        matrix: ``2 x 3`` frame -> crop matrix it was cut with. mask: ``S x S`` float in [0, 1].

    Returns:
        The frame box ``(x0, y0, x1, y1)`` that may have changed, or None.
    """
    if out is None:
        out = frame.copy()
    crop_h, crop_w = face.shape[:2]
    roi = paste_region(frame.shape, matrix, (crop_w, crop_h), blur_radius=2)
    blend = float(min(max(blend, 0.0), 1.0))
    if roi is None or blend == 0.0:
        return None
    x0, y0, x1, y1 = roi
    inv = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    inv[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    restored = cv2.warpAffine(face, inv, size).astype(np.float64)   # float64 as facexlib blends
    mask = cv2.resize(np.asarray(mask, dtype=np.float64), (crop_w, crop_h))
    soft = cv2.warpAffine(mask, inv, size, flags=3) * blend
    return _blend_where_soft(frame, out, (x0, y0), soft, restored, np.float64)


def _blend_where_soft(frame: np.ndarray, out: np.ndarray, origin: tuple[int, int], soft: np.ndarray,
                      pasted: np.ndarray, dtype) -> Region | None:
    """``out = soft * pasted + (1 - soft) * frame``, computed in ``dtype`` and truncated to uint8,
    over the box of the ``h x w`` region at ``origin`` (frame pixels) where ``soft`` > 0; ``pasted``
    is ``h x w x C``. Returns that box ``(x0, y0, x1, y1)`` in frame pixels, or None."""
    rows = np.flatnonzero((soft > 0).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((soft > 0).any(axis=0))
    x0, y0 = origin
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    soft3 = soft[r0:r1, c0:c1, None].astype(dtype, copy=False)
    target = frame[y0 + r0:y0 + r1, x0 + c0:x0 + c1].astype(dtype)
    blended = soft3 * pasted[r0:r1, c0:c1].astype(dtype, copy=False) + (1 - soft3) * target
    out[y0 + r0:y0 + r1, x0 + c0:x0 + c1] = np.clip(blended, 0, 255).astype(np.uint8)
    return x0 + c0, y0 + r0, x0 + c1, y0 + r1


def paste_restored(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray, *, blend: float = 1.0,
                   out: np.ndarray | None = None) -> Region | None:
    """Paste a restored crop back as facexlib ``paste_faces_to_input_image`` (no parsing model).

    With ``inv`` the inverse of ``matrix``: ``restored = warpAffine(face, inv)`` and
    ``mask = warpAffine(ones(crop), inv)`` (bilinear, border 0); ``mask = erode(mask, 2x2)``;
    ``w_edge = int(sum(mask) ** 0.5) // 20``; ``soft = GaussianBlur(erode(mask, (2 w_edge)^2),
    (2 w_edge + 1)^2, 0)``; ``out = soft * (mask * restored) + (1 - soft) * frame`` truncated to
    uint8. ``blend`` in 0..1 scales ``soft`` (FaceFusion's frame blend ``blend * pasted +
    (1 - blend) * frame``, exactly). The work is done in the box of the warped crop plus a margin
    wider than the blur, so it equals the whole-frame computation (up to OpenCV's sub-pixel
    rounding of the shifted warp) but for one fix: ``soft`` is zeroed where ``mask`` is 0 (the
    even ``2 w_edge`` erosion and the blur reach 1 px past the crop's right and bottom edges,
    where facexlib blends the frame toward black). Pixels outside the warped crop are left
    bit-identical.

    Args:
        frame: ``H x W x C`` uint8 BGR frame (not modified unless it is ``out``).
        face: ``S x S x C`` uint8 BGR restored crop.
        matrix: ``2 x 3`` frame -> crop matrix it was cut with.
        blend: share of the restored face (1 = facexlib's paste).
        out: write into this ``H x W x C`` uint8 array (``out=frame`` pastes in place); only
            pixels inside the returned box are written.

    Returns:
        The frame box ``(x0, y0, x1, y1)`` (exclusive ends) holding every pixel that may have
        changed (where ``soft > 0``), or None when none can.
    """
    if frame.dtype != np.uint8 or face.dtype != np.uint8 or frame.ndim != 3 or face.ndim != 3:
        raise ValueError(f"paste_restored expects uint8 H x W x C frame and face, got {frame.shape} {face.shape}")
    if out is None:
        out = frame.copy()
    crop_h, crop_w = face.shape[:2]
    inv = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    # w_edge <= sqrt(area of the warped crop) // 20: that plus 2 is a margin wider than the blur
    w_bound = int(math.sqrt(crop_w * crop_h * abs(np.linalg.det(inv[:, :2])))) // 20 + 2
    roi = paste_region(frame.shape, matrix, (crop_w, crop_h), blur_radius=w_bound)
    blend = float(min(max(blend, 0.0), 1.0))
    if roi is None or blend == 0.0:
        return None
    x0, y0, x1, y1 = roi
    size = (x1 - x0, y1 - y0)
    inv[:, 2] -= (x0, y0)
    restored = cv2.warpAffine(face, inv, size)
    mask = cv2.warpAffine(np.ones((crop_h, crop_w), np.float32), inv, size)
    mask = cv2.erode(mask, np.ones((2, 2), np.uint8))
    w_edge = int(float(np.sum(mask)) ** 0.5) // 20
    # as facexlib, the kernel is (2 w_edge)^2 even when empty (OpenCV then erodes 3 x 3)
    soft = cv2.erode(mask, np.ones((2 * w_edge, 2 * w_edge), np.uint8))
    soft = cv2.GaussianBlur(soft, (2 * w_edge + 1, 2 * w_edge + 1), 0)
    soft[mask <= 0] = 0   # facexlib's even erosion + blur reach 1 px past the crop, blending it to black
    if blend < 1.0:
        soft *= np.float32(blend)
    if restored.ndim == 2:  # OpenCV drops a single channel axis
        restored = restored[:, :, None]
    return _blend_where_soft(frame, out, (x0, y0), soft, mask[:, :, None] * restored.astype(np.float32), np.float32)


class Enhancer:
    """A GFPGAN session: align to the FFHQ 512 template (LMedS, gray border as facexlib),
    restore, paste back as facexlib without a parsing model (:func:`paste_restored`).

    Args:
        session: onnxruntime session of a ``gfpgan_*`` artifact (``1 x 3 x 512 x 512`` in/out).
        recipe: its recipe (pixel formats: RGB, (p - 127.5) / 127.5; output clamped).
    """

    def __init__(self, session: ort.InferenceSession, recipe: Recipe):
        self.session = session
        self.recipe = recipe
        self.crop_size = int(recipe.crop_size)
        self.pixels = recipe.pixels
        self.output_pixels = recipe.output_pixels
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = session.get_outputs()[0].name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def enhance_crop(self, frame: np.ndarray, landmarks: np.ndarray, blend: float = 1.0
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Restored face ``(512 x 512 x 3 uint8 BGR, 2 x 3 frame -> crop matrix)``.

        ``blend`` in 0..1 mixes the restored crop with the unrestored one
        (``blend * restored + (1 - blend) * crop``; 1 = fully restored). :meth:`enhance_into`
        blends in the frame instead (no second resampling of the unrestored face)."""
        m = gfpgan_norm_matrix(landmarks, self.crop_size)
        crop = warp_face(frame, m, self.crop_size, border_value=GFPGAN_BORDER_VALUE)
        x = self.pixels.to_tensor(crop).astype(self.input_dtype, copy=False)
        out = run_session(self.session, {self.input_name: x}, [self.output_name])[self.output_name]
        restored = self.output_pixels.to_pixels(np.clip(np.asarray(out, dtype=np.float32), -1.0, 1.0))[0]
        blend = float(min(max(blend, 0.0), 1.0))
        if blend < 1.0:
            restored = cv2.addWeighted(restored, blend, crop, 1.0 - blend, 0.0)
        return restored, m

    def enhance_into(self, frame: np.ndarray, landmarks: np.ndarray, blend: float = 1.0,
                     parser=None) -> Region | None:
        """Restore the face at ``landmarks`` (``5 x 2``) in ``frame`` (``H x W x 3`` uint8 BGR)
        **in place**, ``blend`` (0..1) the share of the restored face; returns the frame box
        that may have changed, or None. Without ``parser``, pixels outside the warped 512 crop
        (eroded by about a tenth of its side) stay bit-identical; with a
        :class:`~ffkit.runtime.face_parser.FaceParser`, the restored face's labels decide
        (:func:`paste_parsed`): only its face classes, softened, change."""
        if blend <= 0.0:
            return None
        face, m = self.enhance_crop(frame, landmarks)
        if parser is not None:
            mask = parsed_face_mask(parser.parse(face)[0])
            return paste_parsed(frame, face, m, mask, blend=blend, out=frame)
        return paste_restored(frame, face, m, blend=blend, out=frame)
