"""Crop-space blend masks for pasting a face back: a feathered box, face regions from a parser's
label map, and their combination. Pure numpy + OpenCV.

Every mask is ``H x W`` float32 in [0, 1] over an aligned crop (1: take the new face, 0: keep
the frame), ready for :func:`ffkit.runtime.geometry.paste_back`'s ``face_mask``.

* :func:`box_mask`: the feathered box :func:`~ffkit.runtime.geometry.paste_back` itself applies
  (insightface's erode + blur, :func:`~ffkit.runtime.geometry.feather_paste_mask`), made in crop
  space, optionally shrunk by FaceFusion-style padding.
* :func:`region_mask`: the pixels of a label map (:class:`~ffkit.runtime.face_parser.FaceParser`)
  whose class is in the chosen regions; :func:`feather_mask` softens it as FaceFusion's
  ``create_region_mask`` does, and :func:`crop_region_mask` does both at the crop's size.
* :func:`combine_masks`: the elementwise minimum (FaceFusion's ``numpy.minimum.reduce``).

Class indices are face-parsing.PyTorch's (CelebAMask-HQ order, ``prepropess_data.py``), which
facexlib's ``parsing_bisenet`` and yakhyo/face-parsing share; region names are FaceFusion's
(``facefusion.choices.face_mask_region_set``) plus names for the classes it does not offer.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from ffkit.recipes.errors import FfkitError

from .geometry import feather_paste_mask

__all__ = ["MaskError", "CLASS_NAMES", "REGIONS", "DEFAULT_REGIONS", "FEATHER_SIGMA", "region_names",
           "region_mask", "feather_mask", "crop_region_mask", "box_mask", "combine_masks"]


class MaskError(FfkitError):
    """A mask option the user gave that cannot be used (e.g. an unknown region name)."""


#: The parser's 19 classes, by index (face-parsing.PyTorch ``atts``, background first).
CLASS_NAMES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
               "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")

#: User-facing region name -> class index. The first ten are FaceFusion's, spelt as it spells
#: them ("left" is the face's own, as CelebAMask-HQ labels it); the rest name the other classes.
REGIONS = {
    "skin": 1, "left-eyebrow": 2, "right-eyebrow": 3, "left-eye": 4, "right-eye": 5, "glasses": 6,
    "nose": 10, "mouth": 11, "upper-lip": 12, "lower-lip": 13,
    "left-ear": 7, "right-ear": 8, "earring": 9, "neck": 14, "necklace": 15, "cloth": 16, "hair": 17, "hat": 18,
}

#: FaceFusion's default ``--face-mask-regions`` (all of its ten): skin, brows, eyes, glasses,
#: nose, mouth and lips; ears, neck, hair, hat, clothes and background are left to the frame.
DEFAULT_REGIONS = ("skin", "left-eyebrow", "right-eyebrow", "left-eye", "right-eye", "glasses", "nose", "mouth",
                   "upper-lip", "lower-lip")

#: Gaussian sigma (crop pixels) of FaceFusion's region-mask feathering.
FEATHER_SIGMA = 5.0


def region_names(names: str | Iterable[str]) -> tuple[str, ...]:
    """Validated region names from a comma-separated string or a sequence, in the given order
    (duplicates dropped); an unknown name is a one-line :class:`MaskError` listing the valid ones."""
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen: list[str] = []
    for item in (str(i).strip().lower() for i in items):
        if not item:
            continue
        if item not in REGIONS:
            raise MaskError(f"unknown face region {item!r} (valid: {', '.join(REGIONS)})")
        if item not in chosen:
            chosen.append(item)
    if not chosen:
        raise MaskError(f"no face region given (valid: {', '.join(REGIONS)})")
    return tuple(chosen)


def region_mask(labels: np.ndarray, names: str | Iterable[str] = DEFAULT_REGIONS) -> np.ndarray:
    """1 where a pixel's class is one of the regions ``names``, else 0.

    Args:
        labels: ``H x W`` (or any shape) integer class indices 0..18 (:data:`CLASS_NAMES`).
        names: region names (:data:`REGIONS`), a sequence or a comma-separated string.

    Returns:
        float32 array of ``labels``' shape holding 0.0 and 1.0 (hard edges; see :func:`feather_mask`).
    """
    indices = [REGIONS[n] for n in region_names(names)]
    return np.isin(np.asarray(labels), indices).astype(np.float32)


def feather_mask(mask: np.ndarray, sigma: float = FEATHER_SIGMA, size: Sequence[int] | None = None) -> np.ndarray:
    """FaceFusion's feathering of a region mask: ``(clip(G_sigma * clip(m, 0, 1), 0.5, 1) - 0.5) * 2``.

    ``G_sigma`` is ``cv2.GaussianBlur(m, (0, 0), sigma)`` (kernel size from sigma, reflected
    border). The edge moves half the blur inward: a pixel that was 1 keeps 1 only when at least
    half of its blurred neighbourhood is 1, so pixels near the region's border fade to 0.

    Args:
        mask: ``H x W`` float in [0, 1] (values outside are clipped first).
        sigma: blur sigma in pixels of the output (FaceFusion: 5 at the crop's size); 0 skips it.
        size: ``(width, height)`` to resize the mask to first (bilinear, as FaceFusion resizes the
            parser's 512 mask to the crop), or None to keep its size.

    Returns:
        ``height x width`` float32 in [0, 1].
    """
    m = np.asarray(mask, dtype=np.float32)
    if size is not None and (m.shape[1], m.shape[0]) != (int(size[0]), int(size[1])):
        m = cv2.resize(m, (int(size[0]), int(size[1])), interpolation=cv2.INTER_LINEAR)
    m = np.clip(m, 0.0, 1.0)
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), float(sigma))
    return ((np.clip(m, 0.5, 1.0) - 0.5) * 2.0).astype(np.float32)


def crop_region_mask(labels: np.ndarray, names: str | Iterable[str] = DEFAULT_REGIONS,
                     size: Sequence[int] | None = None, sigma: float = FEATHER_SIGMA) -> np.ndarray:
    """FaceFusion's ``create_region_mask`` after its model: :func:`region_mask` of an ``H x W``
    label map, resized to the crop's ``(width, height)`` = ``size`` (None: the labels' size) and
    feathered with :func:`feather_mask`; ``height x width`` float32 in [0, 1]."""
    return feather_mask(region_mask(labels, names), sigma=sigma, size=size)


def _wh(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    return int(size[0]), int(size[1])


def box_mask(size: int | Sequence[int], blur: int | None = None,
             padding: Sequence[float] = (0, 0, 0, 0)) -> np.ndarray:
    """The feathered box of a crop: :func:`~ffkit.runtime.geometry.paste_back`'s own mask, in crop space.

    The crop's white box, shrunk by ``padding`` (FaceFusion's ``--face-mask-padding``: percent of
    the crop's height for top and bottom, of its width for right and left, rows/columns set to 0,
    ``int(side * percent / 100)`` of them), then feathered exactly as the swap paste feathers the
    warped crop (:func:`~ffkit.runtime.geometry.feather_paste_mask`: erode ``max(s // 10, 10)``,
    blur radius ``max(s // 20, 5)`` or ``blur``, ``s`` from the remaining box). With no padding
    it equals the mask ``paste_back`` applies to a crop pasted at scale 1 without rotation; at other
    scales ``paste_back`` sizes its erosion and blur in frame pixels, so the two differ by that scale.

    Args:
        size: crop side, or ``(width, height)``.
        blur: blur radius in crop pixels (None: the paste's rule; 0: no blur).
        padding: ``(top, right, bottom, left)`` in percent, each in 0..100.

    Returns:
        ``height x width`` float32 in [0, 1].
    """
    w, h = _wh(size)
    top, right, bottom, left = (float(p) for p in padding)
    if min(top, right, bottom, left) < 0 or max(top, right, bottom, left) > 100:
        raise MaskError(f"mask padding {tuple(padding)} must be 4 percentages (top, right, bottom, left) in 0..100")
    reach = max(w, h) // 20 + 5 if blur is None else int(blur)   # >= the blur radius the paste's rule picks
    margin = reach + 3
    canvas = np.zeros((h + 2 * margin, w + 2 * margin), np.float32)
    y0, y1 = margin + int(h * top / 100), margin + h - int(h * bottom / 100)
    x0, x1 = margin + int(w * left / 100), margin + w - int(w * right / 100)
    if y0 >= y1 or x0 >= x1:
        return np.zeros((h, w), np.float32)
    canvas[y0:y1, x0:x1] = 255
    feathered = feather_paste_mask(canvas, blur_radius=blur)
    return np.ascontiguousarray(feathered[margin:margin + h, margin:margin + w])


def combine_masks(*masks: np.ndarray) -> np.ndarray:
    """Elementwise minimum of same-shape masks, clipped to [0, 1], float32 (a pixel takes the new
    face only as much as every mask allows); ValueError when none are given or shapes differ."""
    if not masks:
        raise ValueError("combine_masks needs at least one mask")
    arrays = [np.asarray(m, dtype=np.float32) for m in masks]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"masks differ in shape: {[a.shape for a in arrays]}")
    return np.clip(np.minimum.reduce(arrays), 0.0, 1.0).astype(np.float32)
