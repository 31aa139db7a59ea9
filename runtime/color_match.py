"""Colour matching of a swapped face to the face it replaces (Reinhard et al. 2001, in LAB).

Its one job: before the paste, shift and scale each LAB channel of the swapped crop so that,
inside the face mask, its mean and standard deviation equal the target crop's. The swapper's
output often has the source's skin tone and lighting; matching them hides the seam.

LAB is OpenCV's float conversion of BGR in [0, 1] (L in 0..100, a and b about -128..127), the
statistics are taken over the pixels whose mask weight is at least :data:`MASK_CUT`, and the
transform is applied to the whole crop (the paste mask then decides where it shows).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["MASK_CUT", "MIN_PIXELS", "lab_statistics", "match_colors"]

#: A crop pixel counts for the statistics when its mask weight is at least this.
MASK_CUT = 0.5
#: Fewer mask pixels than this: too few for statistics, the face is returned unchanged.
MIN_PIXELS = 16


def _lab(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr.astype(np.float32) / np.float32(255.0), cv2.COLOR_BGR2LAB)


def lab_statistics(bgr: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel LAB ``(mean, std)`` (each ``(3,)`` float64) of the ``H x W x 3`` uint8 BGR
    image over the pixels where the ``H x W`` mask (float in [0, 1]) is at least MASK_CUT."""
    pixels = _lab(bgr)[np.asarray(mask) >= MASK_CUT].astype(np.float64)
    return pixels.mean(axis=0), pixels.std(axis=0)


def match_colors(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``face`` recoloured so its LAB mean/std inside ``mask`` equal ``target``'s.

    Args:
        face: ``S x S x 3`` uint8 BGR, the swapped crop.
        target: ``S x S x 3`` uint8 BGR, the target's crop at the same alignment (before the swap).
        mask: ``S x S`` float in [0, 1], where the face is (the paste mask, box and/or region).

    Returns:
        ``S x S x 3`` uint8 BGR (rounded, clipped); ``face`` itself when the mask holds fewer
        than MIN_PIXELS pixels. A channel that is flat in the face keeps its spread (only its
        mean moves).
    """
    inside = np.asarray(mask) >= MASK_CUT
    if int(inside.sum()) < MIN_PIXELS:
        return face
    face_lab = _lab(face).astype(np.float64)
    f_mean, f_std = face_lab[inside].mean(axis=0), face_lab[inside].std(axis=0)
    t_mean, t_std = lab_statistics(target, mask)
    scale = np.where(f_std > 1e-6, t_std / np.maximum(f_std, 1e-6), 1.0)
    matched = ((face_lab - f_mean) * scale + t_mean).astype(np.float32)
    bgr = cv2.cvtColor(matched, cv2.COLOR_LAB2BGR)
    return np.clip(np.rint(bgr * 255.0), 0, 255).astype(np.uint8)
